"""Answers to count queries: periods, funnels, series, rankings, indexes.

Shared by the HTTP API and `tallyd query`. Each answer reads the store in one
snapshot and adds what the aggregator has not flushed yet, so a count always
includes every event accepted before the question. A day or hour hash past its
retention is neither read nor added to: its segments are zeros on every store,
before and after the store deletes it (tallyd.retention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from tallyd.aggregator import NOTHING, Aggregator, Unflushed
from tallyd.keys import BASELINE, ROLLUP, KeySpace, escape
from tallyd.periods import MAX_YEAR, MIN_YEAR, Clock, Period
from tallyd.retention import Retention
from tallyd.stores.base import Store

INTERVALS = ("minute", "hour", "day", "month", "year")
MAX_SERIES_POINTS = 20_000
MAX_LIST = 1000


@dataclass
class Stats:
    store: Store
    keys: KeySpace
    clock: Clock
    aggregator: Aggregator | None = None
    node: str = ""
    retention: Retention = field(default_factory=Retention)

    async def _read(self, keys: list[str]) -> tuple[list[dict[str, int]], list[int], Unflushed]:
        """Counter hashes in one snapshot, the batch each holds, and what the
        aggregator had not written when the read began (see `Aggregator.unflushed`)."""
        agg = self.aggregator
        view = agg.unflushed() if agg is not None else NOTHING
        snap = await self.store.read(keys, agg.node if agg is not None else "")
        return snap.hashes, snap.applied, view

    def _key(self, account: str, event: str, parts: tuple[str, ...]) -> str:
        acc = ROLLUP if account == ROLLUP else escape(account)
        return self.keys.counter(acc, escape(event), parts)

    def _baseline_key(self, account: str, event: str) -> str:
        return self.keys.baseline(escape(account), escape(event))

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _past(self, parts: tuple[str, ...], now: float) -> bool:
        """Whether the counter hash of period `parts` is past retention at `now`."""
        return self.retention.is_past(self.clock.tz, parts, now)

    # -- one period -----------------------------------------------------------

    async def period(self, account: str, event: str, period: Period) -> dict[str, Any]:
        """A period's segments, zero-filled, with totals and drill-down links."""
        counts = await self.segment_counts(account, event, period)
        segments = period.segments()
        if period.year is None:
            # Only years a period can name: each is a link the API must answer.
            counts = {y: n for y, n in counts.items() if MIN_YEAR <= y <= MAX_YEAR}
            if counts:
                segments = list(range(min(counts), max(counts) + 1))
        data = {str(s): counts.get(s, 0) for s in segments}
        total = sum(data.values())
        up = period.up()
        if up is not None and period.day is not None and self._past(period.parts, self._now()):
            # Its own hash (hours or minutes) is past retention, but the period above
            # still holds its total: the day of a replayed year shows it, in no hour.
            total = (await self.segment_counts(account, event, up)).get(int(period.parts[-1]), 0)
        base = f"/api/stats/track/{quote(account, safe='')}/{quote(event, safe='')}"
        here = _path(base, period)
        # Minutes are not periods of their own: an hour has no segment links.
        width = 4 if period.year is None else 2
        children = [] if period.hour is not None else [f"{here}/{s:0{width}d}" for s in segments]
        return {
            "account": account,
            "event": event,
            "year": period.year,
            "month": period.month,
            "day": period.day,
            "hour": period.hour,
            "total": total,
            "data": data,
            "links": {
                "self": here,
                "up": _path(base, up) if up else f"/api/stats/track/{quote(account, safe='')}",
                "segments": children,
            },
        }

    async def segment_counts(self, account: str, event: str, period: Period) -> dict[int, int]:
        """A period's counts by segment, stored and unflushed; none past retention."""
        if self._past(period.parts, self._now()):
            return {}
        (h,), (applied,), view = await self._read([self._key(account, event, period.parts)])
        counts = {int(f): n for f, n in h.items() if f.isdigit()}
        for _, minute, _, n, batch in view.of(event, account):
            if batch <= applied:
                continue
            f = period.field_of(self.clock.parts(minute))
            if f is not None:
                counts[int(f)] = counts.get(int(f), 0) + n
        return counts

    async def totals(self, wanted: list[tuple[str, str, tuple[str, ...]]]) -> list[int]:
        """The counts of many (account, event, period parts): one read, one pass."""
        now = self._now()
        # What to read for each: its own hash, or, for a day or hour whose hash is past
        # retention, its field in the hash above (as `period` does); None: nothing kept.
        reads: list[tuple[int, tuple[str, ...], str | None]] = []
        for i, (_, _, parts) in enumerate(wanted):
            if not self._past(parts, now):
                reads.append((i, parts, None))
            elif len(parts) >= 3 and not self._past(parts[:-1], now):
                reads.append((i, parts[:-1], parts[-1]))
        live = [i for i, _, _ in reads]
        # An id's starting count (set by its owner, tallyd.owner) is in its all-time
        # total and in no period: read in the same snapshot, from a hash of its own.
        based = [i for i, parts, _ in reads if not parts]
        hashes, read_applied, view = await self._read(
            [self._key(wanted[i][0], wanted[i][1], parts) for i, parts, _ in reads]
            + [self._baseline_key(wanted[i][0], wanted[i][1]) for i in based]
        )
        baselines = hashes[len(reads) :]
        del hashes[len(reads) :], read_applied[len(reads) :]
        out = [0] * len(wanted)
        applied = [0] * len(wanted)
        for (i, _, field_), h, seq in zip(reads, hashes, read_applied, strict=True):
            if field_ is None:
                out[i] = sum(n for f, n in h.items() if f.isdigit())
            else:
                out[i] = h.get(field_, 0)
            applied[i] = seq
        for i, h in zip(based, baselines, strict=True):
            out[i] += h.get(BASELINE, 0)
        if self.aggregator is None:
            return out
        where: dict[tuple[str, str], list[int]] = {}
        for i in live:
            account, event, _ = wanted[i]
            where.setdefault((account, event), []).append(i)
        parts_of = self.clock.parts
        for (account, event), asked in where.items():
            for (_, _, minute, _), n, batch in view.select(account, event):
                for i in asked:
                    parts = wanted[i][2]
                    if batch > applied[i] and parts_of(minute)[: len(parts)] == parts:
                        out[i] += n
        return out

    async def hashes(
        self, account: str, event: str, holders: list[tuple[str, ...]]
    ) -> tuple[list[dict[str, int]], list[int], Unflushed]:
        """The counter hashes of many periods in one snapshot, with the batch each
        holds and what was not written yet when it was read."""
        return await self._read([self._key(account, event, parts) for parts in holders])

    async def funnel(self, account: str, event: str, period: Period) -> dict[str, Any]:
        """Breakdown counts (e.g. orders by status) for a year or a month."""
        acc = ROLLUP if account == ROLLUP else escape(account)
        key = self.keys.funnel(acc, escape(event), period.parts)
        (h,), (applied,), view = await self._read([key])
        counts = dict(h)
        for _, minute, bval, n, batch in view.of(event, account):
            if batch <= applied or bval is None:
                continue
            if period.field_of(self.clock.parts(minute)) is not None:
                counts[bval] = counts.get(bval, 0) + n
        return {
            "account": account,
            "event": event,
            "year": period.year,
            "month": period.month,
            "total": sum(counts.values()),
            "data": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    # -- ranges ----------------------------------------------------------------

    async def series(
        self, account: str, event: str, start: datetime, end: datetime, interval: str
    ) -> dict[str, Any]:
        """Counts per interval from `start` to `end` (inclusive), local time, zero-filled."""
        labels = _labels(start, end, interval)
        # Each point lives in the hash one level up: minutes in an hour hash, etc.
        holder = {"minute": 4, "hour": 3, "day": 2, "month": 1, "year": 0}[interval]
        now = self._now()
        # Points whose hash is past retention stay zero: it is neither read nor added to.
        parents = [
            p for p in dict.fromkeys(lab[:holder] for lab in labels) if not self._past(p, now)
        ]
        hashes, applied, view = await self._read([self._key(account, event, p) for p in parents])
        by_parent = dict(zip(parents, hashes, strict=True))
        applied_by_parent = dict(zip(parents, applied, strict=True))
        counts = {lab: by_parent.get(lab[:holder], {}).get(lab[holder], 0) for lab in labels}
        depth = holder + 1
        for _, minute, _, n, batch in view.of(event, account):
            lab = self.clock.parts(minute)[:depth]
            seen = applied_by_parent.get(lab[:holder])
            if lab in counts and seen is not None and batch > seen:
                counts[lab] += n
        points = [{"time": _label_text(lab), "count": counts[lab]} for lab in labels]
        return {
            "account": account,
            "event": event,
            "interval": interval,
            "from": points[0]["time"],
            "to": points[-1]["time"],
            "timezone": self.clock.name,
            "total": sum(counts.values()),
            "points": points,
        }

    # -- indexes and rankings -----------------------------------------------

    async def events(self, account: str | None = None) -> list[str]:
        key = self.keys.events if account is None else self.keys.account_events(escape(account))
        view = self.aggregator.unflushed() if self.aggregator is not None else NOTHING
        names = await self.store.members(key, "", "", MAX_LIST)
        found = {unquote(n) for n in names} | view.events(account)
        return sorted(found)

    async def accounts(self, event: str, prefix: str, after: str, limit: int) -> dict[str, Any]:
        names = await self.store.members(
            self.keys.accounts(escape(event)),
            escape(prefix),
            escape(after) if after else "",
            limit + 1,
        )
        page = [unquote(n) for n in names[:limit]]
        return {
            "event": event,
            "prefix": prefix,
            "accounts": page,
            "next": page[-1] if len(names) > limit else None,
        }

    async def top(self, event: str, parts: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        """Accounts with the most events in a day (`Y, M, D`) or month (`Y, M`)."""
        ranked = await self.store.top(self.keys.ranking(escape(event), parts), MAX_LIST)
        scores = {unquote(m): s for m, s in ranked}
        if self.aggregator is not None:
            depth = len(parts)
            # A ranking carries no batch marker: the view is taken after the read, and
            # only its pending cells (not yet in any batch) are added. A batch written
            # during the read may be left out for a moment; nothing counts twice.
            view = self.aggregator.unflushed()
            for a, minute, _, n, batch in view.of(event, None):
                if batch == view.upcoming and self.clock.parts(minute)[:depth] == parts:
                    scores[a] = scores.get(a, 0) + n
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{"account": a, "count": n} for a, n in best]


def _path(base: str, period: Period) -> str:
    return "/".join((base, *period.parts))


def _labels(start: datetime, end: datetime, interval: str) -> list[tuple[str, ...]]:
    """Local calendar labels from start to end, as zero-padded key parts."""
    if end < start:
        raise ValueError("'to' is before 'from'")
    out: list[tuple[str, ...]] = []

    def push(lab: tuple[str, ...]) -> None:
        if len(out) >= MAX_SERIES_POINTS:
            raise ValueError(f"more than {MAX_SERIES_POINTS} points: narrow the range")
        out.append(lab)

    if interval == "year":
        for y in range(start.year, end.year + 1):
            push((f"{y:04d}",))
    elif interval == "month":
        y, m = start.year, start.month
        while (y, m) <= (end.year, end.month):
            push((f"{y:04d}", f"{m:02d}"))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    elif interval == "day":
        d, last = start.date(), end.date()
        while d <= last:
            push((f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"))
            d += timedelta(days=1)
    else:
        # Wall-clock steps: a DST gap's missing hour still gets its (empty) point.
        minute = interval == "minute"
        step = timedelta(minutes=1) if minute else timedelta(hours=1)
        t = start.replace(tzinfo=None, second=0, microsecond=0)
        if not minute:
            t = t.replace(minute=0)
        stop = end.replace(tzinfo=None)
        while t <= stop:
            lab = (f"{t.year:04d}", f"{t.month:02d}", f"{t.day:02d}", f"{t.hour:02d}")
            push((*lab, f"{t.minute:02d}") if minute else lab)
            t += step
    return out


def _label_text(lab: tuple[str, ...]) -> str:
    """`2013`, `2013-09`, `2013-09-05`, `2013-09-05T14:00`, `2013-09-05T14:03`."""
    text = "-".join(lab[:3])
    if len(lab) >= 4:
        text += f"T{lab[3]}:{lab[4] if len(lab) == 5 else '00'}"
    return text
