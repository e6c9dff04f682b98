"""Badge time windows, sparklines, per-badge time zones and `count=github`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tallyd.aggregator import Aggregator
from tallyd.badges import windows
from tallyd.expand import Expander
from tallyd.keys import KeySpace
from tallyd.metrics import Metrics
from tallyd.periods import Clock
from tallyd.retention import Retention
from tallyd.stats import Stats
from tallyd.stores import Store
from tests.conftest import Server

pytestmark = pytest.mark.timeout(120)

CAMO = "github-camo (1ff761db)"


def label(server: Server, ident: str, **params: str) -> str:
    r = server.get(f"/badge/{ident}.svg", increment="0", **params)
    assert r.status_code == 200, r.text
    root = ET.fromstring(r.text)
    assert root.get("role") == "img"
    return root.get("aria-label", "")


def figure(server: Server, ident: str, metric: str, **params: str) -> int:
    return int(label(server, ident, metric=metric, format="plain", **params).split(": ")[1])


def test_windows_and_sparklines_sum_the_posted_days(server: Server) -> None:
    # d + 1 hits on each of the last 40 days (UTC), a minute after midnight.
    today = datetime.now(UTC).date()
    if datetime.now(UTC) < datetime.combine(today, datetime.min.time(), UTC) + timedelta(minutes=2):
        pytest.skip("too close to midnight: today's events would be in the future")
    events = []
    for d in range(40):
        day = today - timedelta(days=d)
        at = f"{day.isoformat()}T00:01:00Z"
        events += [{"event": "hit", "account": "w", "time": at}] * (d + 1)
    assert server.post(events).status_code == 202
    # Not flushed yet or flushed: the figures include every accepted event.
    assert figure(server, "w", "7d") == sum(range(1, 8))
    assert figure(server, "w", "30d") == sum(range(1, 31))
    assert figure(server, "w", "week") == sum(range(1, today.weekday() + 2))
    assert figure(server, "w", "today") == 1
    spark = label(server, "w", metric="spark7", label="views")
    assert spark == "views: last 7 days: 7, 6, 5, 4, 3, 2, 1"
    spark30 = label(server, "w", metric="spark30")
    assert spark30 == "hits: last 30 days: " + ", ".join(str(n) for n in range(30, 0, -1))
    r = server.get("/badge/w.svg", metric="spark7", increment="0")
    root = ET.fromstring(r.text)
    line = root.find(".//{http://www.w3.org/2000/svg}polyline")
    assert line is not None and len(line.get("points", "").split()) == 7
    assert root.findtext("{http://www.w3.org/2000/svg}title") == root.get("aria-label")
    # A view counts into today's point and every window at once.
    server.get("/badge/w.svg", metric="spark7")
    assert label(server, "w", metric="spark7").endswith("2, 2")
    assert figure(server, "w", "7d") == sum(range(1, 8)) + 1
    # The endpoint JSON cannot draw a line: it shows the days' total.
    j = server.get("/badge/w.json", metric="spark7").json()
    assert j["message"] == str(sum(range(1, 8)) + 1)


def test_today_in_a_badge_time_zone(server: Server) -> None:
    # One hit per hour (at the current minute) over the last two days.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    times = [now - timedelta(hours=h) for h in range(48)]
    events = [{"event": "hit", "account": "z", "time": t.isoformat()} for t in times]
    assert server.post(events).status_code == 202
    for tz in ("Europe/Madrid", "Asia/Kolkata", "America/Los_Angeles", "Asia/Kathmandu"):
        zone = ZoneInfo(tz)
        local_today = datetime.now(zone).date()
        want = sum(1 for t in times if t.astimezone(zone).date() == local_today)
        assert figure(server, "z", "today", tz=tz) == want, tz
        week_start = local_today - timedelta(days=local_today.weekday())
        want_week = sum(1 for t in times if t.astimezone(zone).date() >= week_start)
        assert figure(server, "z", "week", tz=tz) == want_week, tz
    assert figure(server, "z", "total", tz="Asia/Kolkata") == 48


def test_an_unknown_time_zone_is_an_error_badge(server: Server) -> None:
    for bad in ("Mars/Olympus", "Europe", "../etc/passwd", "x" * 100):
        r = server.get("/badge/z.svg", tz=bad)
        assert r.status_code == 200
        assert r.headers["x-tallyd-error"] == "bad_tz"
        root = ET.fromstring(r.text)
        assert root.get("role") == "img" and root.get("aria-label") == "hits: invalid tz"
    j = server.get("/badge/z.json", tz="Mars/Olympus").json()
    assert j["isError"] is True and j["message"] == "invalid tz"


def test_count_github_counts_only_the_image_proxy(server: Server) -> None:
    def view(agent: str) -> str:
        r = server.client.get(
            "/badge/gh.svg", params={"count": "github"}, headers={"user-agent": agent}
        )
        return ET.fromstring(r.text).get("aria-label", "")

    assert view("Mozilla/5.0 (X11; Linux x86_64)") == "hits: 0"
    assert view(CAMO) == "hits: 1"
    assert view("curl/8.5.0") == "hits: 1"
    assert view(CAMO) == "hits: 2"
    # Without count=github every view counts, as before.
    assert ET.fromstring(server.get("/badge/gh.svg").text).get("aria-label") == "hits: 3"
    assert int(server.get("/api/stats/track/gh/hit").json()["total"]) == 3


# -- windows over a DST change, with a fixed "now" ------------------------------

MADRID = ZoneInfo("Europe/Madrid")
# Madrid's clocks went back on 25 October 2026: 03:00 CEST became 02:00 CET, so
# its local day ran from 22:00 UTC on the 24th to 23:00 UTC on the 25th.
DST_HITS = {
    "2026-10-24T21:59:00Z": 1,  # 23:59 on the 24th in Madrid
    "2026-10-24T22:00:00Z": 2,  # 00:00 on the 25th
    "2026-10-25T00:30:00Z": 4,  # 02:30 CEST
    "2026-10-25T01:30:00Z": 8,  # 02:30 CET, the repeated hour
    "2026-10-25T22:59:00Z": 16,  # 23:59 on the 25th
    "2026-10-25T23:00:00Z": 32,  # 00:00 on the 26th
}


def _minute(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) // 60


async def _figures(stats: Stats, metric: str, tz: str, day: date, now: float) -> list[int]:
    spans = windows.buckets(metric, ZoneInfo(tz), day)
    plan = windows.plan(spans, stats.clock, stats.retention, now)
    return await windows.read(stats, "madrid", "hit", plan)


@pytest.mark.parametrize("server_tz", ["UTC", "Asia/Tokyo"])
async def test_windows_at_a_dst_change(store: Store, server_tz: str) -> None:
    # Keep every hash: the fixed day stays readable whenever the test runs.
    keys, clock, retention = KeySpace(), Clock(server_tz), Retention(0, 0)
    agg = Aggregator(store, Expander(keys, clock, retention), Metrics())
    stats = Stats(store, keys, clock, agg, retention=retention)
    for at, n in DST_HITS.items():
        agg.add_many([("madrid", "hit", _minute(at), None, None)] * n)
    now = datetime(2026, 10, 28, 12, tzinfo=UTC).timestamp()
    for flushed in (False, True):
        if flushed:
            await agg.flush()
        today = await _figures(stats, "today", "Europe/Madrid", date(2026, 10, 25), now)
        assert today == [2 + 4 + 8 + 16], flushed
        assert await _figures(stats, "today", "UTC", date(2026, 10, 25), now) == [60]
        spark = await _figures(stats, "spark7", "Europe/Madrid", date(2026, 10, 27), now)
        assert spark == [0, 0, 0, 1, 30, 32, 0], flushed
        week = await _figures(stats, "week", "Europe/Madrid", date(2026, 10, 25), now)
        assert week == [1 + 30]  # Monday the 19th to Sunday the 25th


async def test_half_hour_zones_are_exact_to_the_hour_once_minutes_expire(
    store: Store,
) -> None:
    # Kolkata is UTC+5:30: its midnight cuts a UTC hour in two.
    keys, clock = KeySpace(), Clock("UTC")
    kept = Retention(minutes_days=0, hours_days=0)
    expired = Retention(minutes_days=7, hours_days=0)
    agg = Aggregator(store, Expander(keys, clock, kept), Metrics())
    stats = Stats(store, keys, clock, agg, retention=kept)
    # 18:30 UTC on 2 March 2013 is midnight of the 3rd in Kolkata.
    agg.add_many([("madrid", "hit", _minute("2013-03-02T18:10:00Z"), None, None)] * 1)
    agg.add_many([("madrid", "hit", _minute("2013-03-02T18:40:00Z"), None, None)] * 2)
    agg.add_many([("madrid", "hit", _minute("2013-03-03T18:20:00Z"), None, None)] * 4)
    await agg.flush()
    now = datetime(2013, 3, 5, tzinfo=UTC).timestamp()
    day = date(2013, 3, 3)
    assert await _figures(stats, "today", "Asia/Kolkata", day, now) == [2 + 4]
    # With the minute hashes gone, each cut hour counts in the day it starts in.
    stats.retention = expired
    later = datetime(2013, 4, 1, tzinfo=UTC).timestamp()
    assert await _figures(stats, "today", "Asia/Kolkata", day, later) == [4]
