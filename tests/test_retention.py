"""Retention: a hash past it is never written and never read, alike on every store.

The store tests run once per backend (the `store` fixture): SQLite, Redis and Redis
Cluster must give the very same answers, unflushed, in flight, flushed and pruned.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tallyd.aggregator import Aggregator
from tallyd.expand import Expander
from tallyd.keys import ROLLUP, KeySpace
from tallyd.metrics import Metrics
from tallyd.periods import Clock, Period
from tallyd.retention import DAY, Retention
from tallyd.stats import Stats
from tallyd.stores import Store

pytestmark = pytest.mark.timeout(60)

# Events replayed on 2013-09-05 (UTC), far past both default retentions:
# (hour, minute) → how many.
REPLAY = {(10, 0): 3, (10, 7): 1, (11, 30): 2, (13, 59): 4}
TOTAL = sum(REPLAY.values())
DAY_2013 = ("2013", "09", "05")


class SetClock(Clock):
    """A clock whose "now" a test sets; None: the real time."""

    def __init__(self, tz: str = "UTC") -> None:
        super().__init__(tz)
        self.at: float | None = None

    def now(self) -> datetime:
        return super().now() if self.at is None else datetime.fromtimestamp(self.at, self.tz)


def make(
    store: Store, retention: Retention, clock: Clock | None = None
) -> tuple[Aggregator, Stats]:
    keys, clock = KeySpace(), clock or Clock("UTC")
    agg = Aggregator(store, Expander(keys, clock, retention), Metrics())
    return agg, Stats(store, keys, clock, agg, retention=retention)


def minute_of(hour: int, minute: int) -> int:
    return int(datetime(2013, 9, 5, hour, minute, tzinfo=UTC).timestamp()) // 60


async def answers(stats: Stats) -> dict[str, Any]:
    """Every answer that covers the replayed day, for the account and the rollup."""
    periods = [Period(), Period(2013), Period(2013, 9), Period(2013, 9, 5)]
    periods += [Period(2013, 9, 5, h) for h in range(9, 15)]
    out: dict[str, Any] = {}
    for account in ("acme", ROLLUP):
        for p in periods:
            a = await stats.period(account, "pageview", p)
            out[f"{account} {'/'.join(p.parts)}"] = (a["total"], a["data"])
        for interval, start, end in (
            ("day", datetime(2013, 9, 4), datetime(2013, 9, 6)),
            ("hour", datetime(2013, 9, 5), datetime(2013, 9, 5, 23)),
            ("minute", datetime(2013, 9, 5, 10), datetime(2013, 9, 5, 10, 10)),
        ):
            s = await stats.series(account, "pageview", start, end, interval)
            out[f"{account} {interval}s"] = [p["count"] for p in s["points"]]
        out[f"{account} totals"] = await stats.totals(
            [(account, "pageview", DAY_2013[:n]) for n in range(4)]
            + [(account, "pageview", (*DAY_2013, "10"))]
        )
    return out


def expected(hours_kept: bool, minutes_kept: bool) -> dict[str, Any]:
    """The answers `answers` must give, worked out from REPLAY alone."""
    by_hour = {h: sum(n for (hh, _), n in REPLAY.items() if hh == h) for h in range(24)}
    out: dict[str, Any] = {}
    for account in ("acme", ROLLUP):

        def put(parts: str, data: dict[str, int], name: str = account) -> None:
            out[f"{name} {parts}"] = (sum(data.values()), data)

        put("", {"2013": TOTAL})
        put("2013", {str(m): TOTAL if m == 9 else 0 for m in range(1, 13)})
        put("2013/09", {str(d): TOTAL if d == 5 else 0 for d in range(1, 31)})
        # A day or hour whose own hash is past retention still answers its total,
        # from the hash above it (the month's, the day's), in no segment.
        hours = {str(h): by_hour[h] if hours_kept else 0 for h in range(24)}
        out[f"{account} 2013/09/05"] = (TOTAL, hours)
        for h in range(9, 15):
            minutes = {str(m): REPLAY.get((h, m), 0) if minutes_kept else 0 for m in range(60)}
            out[f"{account} 2013/09/05/{h:02d}"] = (by_hour[h] if hours_kept else 0, minutes)
        out[f"{account} days"] = [0, TOTAL, 0]
        out[f"{account} hours"] = [by_hour[h] if hours_kept else 0 for h in range(24)]
        tens = [REPLAY.get((10, m), 0) if minutes_kept else 0 for m in range(11)]
        out[f"{account} minutes"] = tens
        out[f"{account} totals"] = [TOTAL] * 4 + [by_hour[10] if hours_kept else 0]
    return out


@pytest.mark.parametrize(
    "retention",
    [Retention(), Retention(hours_days=0), Retention(minutes_days=0, hours_days=0)],
    ids=["default", "hours-kept", "all-kept"],
)
async def test_replaying_2013_answers_alike_before_and_after_the_prune(
    store: Store, retention: Retention
) -> None:
    agg, stats = make(store, retention)
    for (hour, minute), n in REPLAY.items():
        for _ in range(n):
            agg.add(("acme", "pageview", minute_of(hour, minute), None, None))
    want = expected(retention.hours_days == 0, retention.minutes_days == 0)
    assert await answers(stats) == want  # still in memory
    flushing = asyncio.create_task(agg.flush())
    await asyncio.sleep(0)  # the batch is taken: in flight while it is expanded and written
    assert await answers(stats) == want
    await flushing
    assert await answers(stats) == want

    # Past retention means not written at all, not written and deleted later.
    day_keys = [f"{who}/pageview/2013/09/05" for who in ("acme", ROLLUP)]
    hour_keys = [f"{who}/pageview/2013/09/05/10" for who in ("acme", ROLLUP)]
    snap = await store.read(day_keys + hour_keys, agg.node)
    hours = {"10": 4, "11": 2, "13": 4} if retention.hours_days == 0 else {}
    minutes = {"00": 3, "07": 1} if retention.minutes_days == 0 else {}
    assert snap.hashes == [hours, hours, minutes, minutes]

    assert await store.prune(int(time.time())) == 0  # nothing of this replay expires
    assert await answers(stats) == want


async def test_keys_within_retention_are_written_and_read(store: Store) -> None:
    retention = Retention()
    agg, stats = make(store, retention)
    minute = int(time.time() // 60)
    y, m, d, h, mi = parts = Clock("UTC").parts(minute)
    agg.add(("acme", "pageview", minute, None, None))
    agg.add(("acme", "pageview", minute, None, None))

    async def check() -> None:
        for who in ("acme", ROLLUP):
            hour = await stats.period(who, "pageview", Period(*map(int, parts[:4])))
            assert hour["total"] == hour["data"][str(int(mi))] == 2
            day = await stats.period(who, "pageview", Period(*map(int, parts[:3])))
            assert day["total"] == day["data"][str(int(h))] == 2
            wanted = [(who, "pageview", parts[:3]), (who, "pageview", parts[:4])]
            assert await stats.totals(wanted) == [2, 2]
            series = await stats.series(
                who, "pageview", datetime(*map(int, parts)), datetime(*map(int, parts)), "minute"
            )
            assert [p["count"] for p in series["points"]] == [2]

    await check()
    await agg.flush()
    await check()
    snap = await store.read([f"acme/pageview/{y}/{m}/{d}", f"acme/pageview/{y}/{m}/{d}/{h}"], "")
    assert snap.hashes == [{h: 2}, {mi: 2}]
    await store.prune(int(time.time()))
    await check()


async def test_a_key_that_expires_between_write_and_read(store: Store) -> None:
    clock = SetClock()
    retention = Retention(minutes_days=1, hours_days=2)
    agg, stats = make(store, retention, clock)
    minute = int(time.time() // 60)
    parts = clock.parts(minute)
    hour_period, day_period = Period(*map(int, parts[:4])), Period(*map(int, parts[:3]))
    field, hour_key = str(int(parts[3])), "acme/pageview/" + "/".join(parts[:4])
    # The hour hash expires first: a day's after its hour's, and kept longer.
    expires = retention.expires_at(clock.tz, parts[:4])
    assert expires < retention.expires_at(clock.tz, parts[:3])
    agg.add(("acme", "pageview", minute, None, None))
    await agg.flush()

    async def shown() -> tuple[int, int]:
        """The hour's minutes, summed, and the day's field for the hour; once the hour
        hash is past retention the hour's own total is still the day's field."""
        hour = await stats.period("acme", "pageview", hour_period)
        day = await stats.period("acme", "pageview", day_period)
        assert hour["total"] == day["data"][field]
        return sum(hour["data"].values()), day["data"][field]

    clock.at = expires - 1
    assert await shown() == (1, 1)
    # From the expiry on, the hour reads as zeros, whether or not the store has it yet.
    clock.at = expires
    assert await shown() == (0, 1)
    # An event for that hour arriving now counts in the day, never in the hour.
    agg.add(("acme", "pageview", minute, None, None))
    assert await shown() == (0, 2)
    stored = (await store.read([hour_key], agg.node)).hashes
    await agg.flush()
    assert (await store.read([hour_key], agg.node)).hashes == stored
    assert await shown() == (0, 2)
    await store.prune(expires)
    assert await shown() == (0, 2)


def test_the_rule_at_its_boundary() -> None:
    utc = ZoneInfo("UTC")
    r = Retention(minutes_days=7, hours_days=400)
    hour = ("2013", "09", "05", "14")
    at = int(datetime(2013, 9, 5, 15, tzinfo=UTC).timestamp()) + 7 * DAY
    assert r.expires_at(utc, hour) == at
    assert not r.is_past(utc, hour, at - 1)
    assert r.is_past(utc, hour, at)
    day_end = int(datetime(2013, 9, 6, tzinfo=UTC).timestamp())
    assert r.expires_at(utc, DAY_2013) == day_end + 400 * DAY
    # Years, months and all time are kept forever; so is everything with 0.
    for parts in ((), ("2013",), ("2013", "09")):
        assert r.expires_at(utc, parts) == 0 and not r.is_past(utc, parts, 1e12)
    assert not Retention(0, 0).is_past(utc, hour, 1e12)
    assert not Retention(0, 0).is_past(utc, DAY_2013, 1e12)


def test_a_key_expires_at_one_instant_on_dst_days() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    r = Retention(minutes_days=1, hours_days=1)
    # 27 October 2013: 03:00 CEST went back to 02:00 CET, so local 02:xx came twice
    # (00:xx and 01:xx UTC) and the day had 25 hours, to 23:00 UTC.
    repeated = ("2013", "10", "27", "02")
    assert r.expires_at(madrid, repeated) == datetime(2013, 10, 27, 2, tzinfo=UTC).timestamp() + DAY
    assert (
        r.expires_at(madrid, repeated[:3])
        == datetime(2013, 10, 27, 23, tzinfo=UTC).timestamp() + DAY
    )
    # 31 March 2013: 02:00 CET jumped to 03:00 CEST; the day had 23 hours, to 22:00 UTC.
    assert (
        r.expires_at(madrid, ("2013", "03", "31"))
        == datetime(2013, 3, 31, 22, tzinfo=UTC).timestamp() + DAY
    )
