"""What number a badge shows, without a store read per view.

The first view of a badge reads its count exactly (the store plus what is not flushed
yet). Later views add their own hit to that figure in memory and are answered at
once; when the figure is older than `refresh`, a view also starts a read of the store
in the background, which brings in hits that arrived by other routes (syslog, the
events API, another tallyd). Every hit is counted in the
aggregator either way: this cache only decides what is drawn.

Distinct visitors (`metric=unique`) work the same way with a HyperLogLog per id and
day: the figure read from the store, plus the new visitors seen here since the read.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from tallyd.aggregator import Aggregator
from tallyd.badges import windows
from tallyd.badges.params import SPARKS
from tallyd.badges.visitors import Visitors
from tallyd.keys import escape
from tallyd.limits import ClientRate, Limited, NewNames
from tallyd.metrics import Metrics
from tallyd.rules import prefix_rollup
from tallyd.stats import Stats

log = logging.getLogger("tallyd.badges")

# metric → how many of (year, month, day) its period names.
DEPTH: Final = {"total": 0, "year": 1, "month": 2, "today": 3, "unique": 3}
SOURCE: Final = "badge"
# A day's distinct-visitor sketch is kept a week, then expires.
UNIQUE_KEEP: Final = 8 * 86400
# Figures going stale within a tenth of the refresh interval (at most this many
# seconds) are read from the store together: each read also walks the pending cells.
REFRESH_GATHER: Final = 0.5
REFRESH_BATCH: Final = 100

_Id = tuple[str, str]  # (account, event)
_Figure = tuple[str, tuple[str, ...]]  # (metric[@zone], period parts)
Shown = int | list[int]  # a number, or a sparkline's counts (oldest first)
# Distinct (figure, day, hour) plans of windowed figures kept.
MAX_PLANS: Final = 4096


@dataclass(slots=True)
class Figure:
    """A figure read from the store, and what this process added since."""

    count: int
    until: float  # monotonic time until which the count is reused
    visitors: set[str] = field(default_factory=set)  # unique: new since the read
    days: list[int] | None = None  # a sparkline's counts; a view adds to the last

    @property
    def shown(self) -> Shown:
        return self.days if self.days is not None else self.count + len(self.visitors)


@dataclass(slots=True)
class _Writes:
    """What a counted view of an id writes besides its hit, worked out once a day: the
    distinct-visitor sketches (its own, and its owner's rollup's) and whose figures
    beside its own take the view (`owner/*`, or None)."""

    day: tuple[str, ...]
    sketches: tuple[str, ...]
    owner: _Id | None


class BadgeCounts:
    def __init__(
        self,
        stats: Stats,
        aggregator: Aggregator,
        metrics: Metrics,
        visitors: Visitors | None = None,
        refresh: float = 5.0,
        max_entries: int = 100_000,
        new_names: NewNames | None = None,
        rate: ClientRate | None = None,
    ) -> None:
        self.visitors = visitors or Visitors()
        # A view of an id new to the process is refused past the new-names limit;
        # views past a client's rate are drawn but not counted.
        self.new_names = new_names or NewNames(set(), 0)
        self.rate = rate or ClientRate(0)
        metrics.counter(
            "tallyd_badge_views_not_counted_total",
            "Badge views drawn but not counted: past --badge-rate for their client and id.",
            lambda: self.rate.limited,
        )
        self.stats = stats
        self.aggregator = aggregator
        self.metrics = metrics
        self.refresh = refresh
        self.max_entries = max_entries
        # Every figure drawn lately per (account, event): a hit bumps them all, so
        # badges of one id with different metrics agree.
        self._shown: dict[_Id, dict[_Figure, Figure]] = {}
        self._reading: dict[tuple[_Id, _Figure], asyncio.Future[Shown]] = {}
        # First reads asked for in the same turn of the loop, read together (`_load_one`).
        self._first: list[tuple[_Id, _Figure, asyncio.Future[Shown]]] = []
        self._loading: set[asyncio.Task[None]] = set()  # held: the loop holds tasks weakly
        self._unique_keys: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._stale: dict[tuple[_Id, _Figure], None] = {}
        self._refresher: asyncio.Future[None] | None = None
        # The current minute, its day and the period of each metric (see `_now`), and
        # today's visitor hashes by the in-memory hash of (address, agent).
        self._minute = -1
        self._minute_ends = 0.0  # when `_minute` is over (epoch seconds)
        self._day: tuple[str, ...] = ()
        self._figures: dict[str, _Figure] = {}
        self._plans: dict[tuple[_Figure, int], windows.Plan] = {}
        self._visitors_today: dict[int, str] = {}
        # What a counted view of an id writes besides its hit (`_plan_writes`).
        self._writes: dict[_Id, _Writes] = {}

    def hit(
        self, account: str, event: str, metric: str, count: bool, client: str, user_agent: bytes
    ) -> Shown | None:
        """A view of a figure read before: counted (when `count`), and the number to
        draw; None when the figure is not cached, and then nothing is counted.

        A figure older than `refresh` is still answered at once while a read of the
        store replaces it in the background: waiting for that read would cost the
        view several turns of a busy event loop.
        """
        # The hot path of every badge view: a few dictionary updates, with nothing
        # worked out again that a minute (`_now`) or a day (`_Writes`) keeps.
        ident = (account, event)
        figures = self._shown.get(ident)
        if figures is None:
            return self._unseen(account, event, metric, count, client, user_agent)
        now = time.time()
        if now >= self._minute_ends:
            self._now()
        figure = self._figures.get(metric) or self._zoned(metric)
        entry = figures.get(figure)
        if entry is None:
            return self._unseen(account, event, metric, count, client, user_agent)
        if entry.until <= time.monotonic():
            entry.until = time.monotonic() + self.refresh  # one refresh at a time
            self._stale[ident, figure] = None
            if self._refresher is None:
                self._refresher = asyncio.ensure_future(self._refresh())
        if count:
            self._count(ident, figures, now, client, user_agent)
        days = entry.days  # `Figure.shown`, inline on this path
        return days if days is not None else entry.count + len(entry.visitors)

    def _unseen(
        self, account: str, event: str, metric: str, count: bool, client: str, user_agent: bytes
    ) -> Shown | None:
        """`hit` for a figure not cached: when its id surely has no count in the store
        (tallyd.seen), it starts at 0 with no read; else None (read it first)."""
        names = self.new_names
        seen = names.seen
        if not seen.ready:
            seen.load_soon(self.stats.store, self.stats.keys)
            return None
        figure = self._figure(metric)
        if figure[0] not in DEPTH or not seen.surely_absent(account):
            return None
        if count:
            if names.room() == 0:
                return None  # refused on the path that reads, which says why
            names.admit(account)
        self._set((account, event), figure, 0)
        return self.hit(account, event, metric, count, client, user_agent)

    def view(self, account: str, event: str, client: str, user_agent: bytes) -> str:
        """Count one view: a hit and a visitor of the day. Returns the visitor's hash
        when it is new to the day's sketch (empty when it is not, or when the view is
        past its client's rate). Raises `Limited` for an id new to the process past
        the limit on new names."""
        if not self.new_names.admit(account):
            raise Limited(
                "new_id_limit",
                "new badge ids are coming too fast; try again later",
                self.new_names.retry_after(),
            )
        now, _ = self._now()
        ident = (account, event)
        return self._count(ident, self._shown.get(ident), now, client, user_agent)

    def _count(
        self,
        ident: _Id,
        figures: dict[_Figure, Figure] | None,
        now: float,
        client: str,
        user_agent: bytes,
    ) -> str:
        if not self.rate.allow(client, ident[0], user_agent):
            return ""
        agg = self.aggregator
        agg.count((ident[0], ident[1], self._minute, None))
        self.metrics.accept(SOURCE)
        day = self._day
        # Keyed by Python's hash of the pair (SipHash under a key random per process),
        # never by the address and user agent themselves: only salted hashes are kept.
        seen_as = hash((client, user_agent))
        visitor = self._visitors_today.get(seen_as)
        if visitor is None:
            if len(self._visitors_today) >= self.max_entries:
                self._visitors_today.clear()
            visitor = self.visitors.hash("/".join(day), client, user_agent)
            self._visitors_today[seen_as] = visitor
        writes = self._writes.get(ident)
        if writes is None or writes.day is not day:
            writes = self._plan_writes(ident, day)
        expire_at = int(now) + UNIQUE_KEEP
        # A visitor added to a sketch before is in the figure read from the store, or
        # on its way there: only a new one is added to what a `unique` figure shows
        # (it was added again after every refresh, showing 2 for one visitor).
        new = visitor if agg.add_unique(writes.sketches[0], visitor, expire_at) else ""
        # Every figure drawn lately for this id takes the view, so badges of one id
        # with different metrics agree; so do its owner's (the flush counts the hit
        # for `owner/*` too, tallyd.expand).
        if figures:
            _bump(figures, day, new)
        if writes.owner is not None:
            new_there = agg.add_unique(writes.sketches[1], visitor, expire_at)
            theirs = self._shown.get(writes.owner)
            if theirs:
                _bump(theirs, day, visitor if new_there else "")
        return new

    def _plan_writes(self, ident: _Id, day: tuple[str, ...]) -> _Writes:
        account, event = ident
        owner = prefix_rollup(account)
        sketches = [self.unique_key(account, event, day)]
        if owner is not None:
            sketches.append(self.unique_key(owner, event, day))
        if len(self._writes) >= self.max_entries:
            self._writes.clear()
        writes = self._writes[ident] = _Writes(
            day, tuple(sketches), None if owner is None else (owner, event)
        )
        return writes

    def forget(self, account: str, event: str) -> None:
        """Drop the figures drawn of an id and of its owner's rollup, so their next
        views read the store: an owner changed what it holds (tallyd.owner)."""
        owner = prefix_rollup(account)
        idents = {(account, event), (owner, event)} if owner else {(account, event)}
        for ident in idents:
            self._shown.pop(ident, None)
        self._stale = {k: v for k, v in self._stale.items() if k[0] not in idents}

    def unique_key(self, account: str, event: str, day: tuple[str, ...]) -> str:
        key = self._unique_keys.get((account, event, day))
        if key is None:
            if len(self._unique_keys) >= self.max_entries:
                self._unique_keys.clear()
            key = self.stats.keys.unique(escape(account), escape(event), day)
            self._unique_keys[account, event, day] = key
        return key

    def _now(self) -> tuple[float, int]:
        """The time and its epoch minute. A new minute works out its day and the
        period each metric names; a new day forgets the day's visitor hashes (their
        salt changes)."""
        now = time.time()
        minute = int(now // 60)
        if minute != self._minute:
            parts = self.stats.clock.parts(minute)
            if parts[:3] != self._day:
                self._visitors_today.clear()
                self._day = parts[:3]  # a new object a day: `_Writes` compare it by identity
            self._minute, self._minute_ends = minute, (minute + 1) * 60.0
            self._figures = {metric: (metric, parts[:d]) for metric, d in DEPTH.items()}
        return now, minute

    def _figure(self, metric: str) -> _Figure:
        self._now()
        return self._figures.get(metric) or self._zoned(metric)

    def _zoned(self, key: str) -> _Figure:
        """The figure of a window or of a metric in a zone (`7d`, `today@Europe/Madrid`):
        named by the local day it ends on, so a new day is a new figure."""
        metric, _, tz = key.partition("@")
        if metric not in windows.WINDOWS:
            figure = self._figures[metric]  # all time and visitors ignore the zone
        else:
            zone = ZoneInfo(tz) if tz else self.stats.clock.tz
            parts = self.stats.clock.parts(self._minute) if not tz else _local_day(zone)
            figure = (key, parts[:3])
        self._figures[key] = figure
        return figure

    def _plan(self, figure: _Figure) -> windows.Plan:
        """Which hashes a windowed figure reads, worked out again every hour (the
        minutes kept at its oldest edge change)."""
        now = time.time()
        cached = self._plans.get((figure, int(now // 3600)))
        if cached is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            metric, _, tz = figure[0].partition("@")
            zone = ZoneInfo(tz) if tz else self.stats.clock.tz
            day = date(*(int(x) for x in figure[1]))
            spans = windows.buckets(metric, zone, day)
            cached = windows.plan(spans, self.stats.clock, self.stats.retention, now)
            self._plans[figure, int(now // 3600)] = cached
        return cached

    async def _refresh(self) -> None:
        """Read the stale figures together, a store read and one pass per batch."""
        try:
            await asyncio.sleep(min(REFRESH_GATHER, self.refresh / 10))
            while self._stale:
                batch = list(self._stale)[:REFRESH_BATCH]
                for key in batch:
                    del self._stale[key]
                for (ident, figure), count in zip(batch, await self._load(batch), strict=True):
                    self._set(ident, figure, count)
                # Let views in between: a read of 1,000 figures held the loop for 15 ms.
                await asyncio.sleep(0)
        except Exception as exc:
            # The figures stay as they are, kept up to date by views, until the next try.
            log.warning("badge figures not refreshed: %s", exc)
        finally:
            self._refresher = None

    async def _load(self, figures: list[tuple[_Id, _Figure]]) -> list[Shown]:
        """Figures as the store has them: period counts in one read, sketches and
        windows one by one (a window is one snapshot of the few hashes its plan names)."""
        # `unique` is in DEPTH (its period is a day) but is read below, as a sketch:
        # with it among the totals, every figure after it took its neighbour's count.
        counted = [
            (a, e, parts)
            for (a, e), (metric, parts) in figures
            if metric in DEPTH and metric != "unique"
        ]
        totals = iter(await self.stats.totals(counted) if counted else [])
        out: list[Shown] = []
        for (account, event), figure in figures:
            metric, parts = figure
            if metric == "unique":
                out.append(await self.stats.store.unique(self.unique_key(account, event, parts)))
            elif metric in DEPTH:
                out.append(next(totals))
            else:
                days = await windows.read(self.stats, account, event, self._plan(figure))
                out.append(days if metric.partition("@")[0] in SPARKS else sum(days))
        return out

    async def read(self, account: str, event: str, metric: str, visitor: str = "") -> Shown:
        """The figure to draw, read from the store (one read per figure at a time).

        `visitor` is this view's hash when it was counted: a sketch read from the
        store lacks the visitors not flushed yet, so they are kept beside it.
        """
        ident, figure = (account, event), self._figure(metric)
        entry = self._shown.get(ident, {}).get(figure)
        reading = self._reading.get((ident, figure))
        if reading is None:
            reading = asyncio.ensure_future(self._load_one(ident, figure))
            self._reading[ident, figure] = reading
            reading.add_done_callback(lambda fut: self._keep(ident, figure, fut))
        try:
            count = await asyncio.shield(reading)
        except Exception:
            if entry is None:
                raise
            # The store is away: keep showing the last figure.
        else:
            entry = self._shown.get(ident, {}).get(figure)
            if entry is None:
                if isinstance(count, list):
                    return count
                return count + (figure[0] == "unique" and visitor != "")
        if figure[0] == "unique" and visitor:
            entry.visitors.add(visitor)
        return entry.shown

    async def _load_one(self, ident: _Id, figure: _Figure) -> Shown:
        """One figure, read with the others asked for in the same turn of the loop:
        64 clients viewing new badges at once make one store read, not 64 hops to a
        reader thread and back."""
        fut: asyncio.Future[Shown] = asyncio.get_running_loop().create_future()
        if not self._first:
            asyncio.get_running_loop().call_soon(self._read_first)
        self._first.append((ident, figure, fut))
        return await fut

    def _read_first(self) -> None:
        asked, self._first = self._first, []
        for start in range(0, len(asked), REFRESH_BATCH):
            task = asyncio.ensure_future(self._load_together(asked[start : start + REFRESH_BATCH]))
            self._loading.add(task)
            task.add_done_callback(self._loading.discard)

    async def _load_together(self, asked: list[tuple[_Id, _Figure, asyncio.Future[Shown]]]) -> None:
        try:
            counts = await self._load([(ident, figure) for ident, figure, _ in asked])
        except Exception as exc:
            for _, _, fut in asked:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), count in zip(asked, counts, strict=True):
            if not fut.done():
                fut.set_result(count)

    def _keep(self, ident: _Id, figure: _Figure, fut: asyncio.Future[Shown]) -> None:
        self._reading.pop((ident, figure), None)
        if not fut.cancelled() and fut.exception() is None:
            self._set(ident, figure, fut.result())

    def _set(self, ident: _Id, figure: _Figure, value: Shown) -> None:
        figures = self._shown.get(ident)
        if figures is None:
            if len(self._shown) >= self.max_entries:
                del self._shown[next(iter(self._shown))]
            figures = self._shown[ident] = {}
        # Spread over ±25%: figures read together would otherwise go stale together.
        until = time.monotonic() + self.refresh * (0.75 + random.random() / 2)
        if isinstance(value, list):
            figures[figure] = Figure(sum(value), until, days=value)
        elif figure[0] == "unique":
            # The read has the sketch as stored: visitors not written yet are shown
            # on top of it (none of them is in it; later ones are added by `_count`).
            key = self.unique_key(*ident, figure[1])
            unwritten = self.aggregator.unwritten_visitors(key)
            figures[figure] = Figure(value, until, unwritten)
        else:
            old = figures.get(figure)
            if old is not None and figure[0] in DEPTH:
                # A period's count only grows, and the figure held here has every
                # view this process answered; a read that crossed a batch's write
                # can miss that batch (written after the read's snapshot, no longer
                # in flight when it ended), and a view must never show less than
                # the one before it.
                value = max(value, old.count)
            figures[figure] = Figure(value, until)


def _bump(figures: dict[_Figure, Figure], day: tuple[str, ...], visitor: str) -> None:
    """One more view in every figure of an id: a hit, or a visitor of the day new to
    its sketch (none when `visitor` is empty)."""
    for (metric, parts), entry in figures.items():
        if metric != "unique":
            entry.count += 1
            if entry.days:
                entry.days[-1] += 1
        elif visitor and parts == day:
            entry.visitors.add(visitor)


def _local_day(zone: ZoneInfo) -> tuple[str, ...]:
    d = datetime.now(zone)
    return (f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}")
