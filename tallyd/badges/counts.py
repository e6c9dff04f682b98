"""What number a badge shows, without a store read per view.

The first view of a badge reads its count exactly (the store plus what is not flushed
yet). Later views within `refresh` seconds add their own hit to that figure in memory;
after `refresh` the next view reads again, which also brings in hits that arrived by
other routes (syslog, the events API, another tallyd). Every hit is counted in the
aggregator either way: this cache only decides what is drawn.

Distinct visitors (`metric=unique`) work the same way with a HyperLogLog per id and
day: the figure read from the store, plus the new visitors seen here since the read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final

from tallyd.aggregator import Aggregator
from tallyd.badges.visitors import Visitors
from tallyd.keys import escape
from tallyd.metrics import Metrics
from tallyd.stats import Stats

# metric → how many of (year, month, day) its period names.
DEPTH: Final = {"total": 0, "year": 1, "month": 2, "today": 3, "unique": 3}
SOURCE: Final = "badge"
# A day's distinct-visitor sketch is kept a week, then expires.
UNIQUE_KEEP: Final = 8 * 86400

_Id = tuple[str, str]  # (account, event)
_Figure = tuple[str, tuple[str, ...]]  # (metric, period parts)


@dataclass(slots=True)
class Figure:
    """A figure read from the store, and what this process added since."""

    count: int
    until: float  # monotonic time until which the count is reused
    visitors: set[str] = field(default_factory=set)  # unique: new since the read

    @property
    def shown(self) -> int:
        return self.count + len(self.visitors)


class BadgeCounts:
    def __init__(
        self,
        stats: Stats,
        aggregator: Aggregator,
        metrics: Metrics,
        visitors: Visitors | None = None,
        refresh: float = 5.0,
        max_entries: int = 100_000,
    ) -> None:
        self.visitors = visitors or Visitors()
        self.stats = stats
        self.aggregator = aggregator
        self.metrics = metrics
        self.refresh = refresh
        self.max_entries = max_entries
        # Every figure drawn lately per (account, event): a hit bumps them all, so
        # badges of one id with different metrics agree.
        self._shown: dict[_Id, dict[_Figure, Figure]] = {}
        self._reading: dict[tuple[_Id, _Figure], asyncio.Future[int]] = {}
        self._unique_keys: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def view(self, account: str, event: str, client: str, user_agent: bytes) -> str:
        """Count one view: a hit and a visitor of the day. Returns the visitor's hash."""
        agg = self.aggregator
        agg.check_capacity()
        now = time.time()
        minute = int(now // 60)
        cell = (account, event, minute, None)
        agg.pending[cell] = agg.pending.get(cell, 0) + 1
        agg.grew()
        self.metrics.accept(SOURCE, 1)
        day = self.stats.clock.parts(minute)[:3]
        visitor = self.visitors.hash("/".join(day), client, user_agent)
        agg.add_unique(self.unique_key(account, event, day), visitor, int(now) + UNIQUE_KEEP)
        # Every figure drawn lately for this id takes the view, so badges of one id
        # with different metrics agree.
        for (metric, parts), entry in self._shown.get((account, event), {}).items():
            if metric != "unique":
                entry.count += 1
            elif parts == day:
                entry.visitors.add(visitor)
        return visitor

    def unique_key(self, account: str, event: str, day: tuple[str, ...]) -> str:
        key = self._unique_keys.get((account, event, day))
        if key is None:
            if len(self._unique_keys) >= self.max_entries:
                self._unique_keys.clear()
            key = self.stats.keys.unique(escape(account), escape(event), day)
            self._unique_keys[account, event, day] = key
        return key

    def _figure(self, metric: str) -> _Figure:
        return metric, self.stats.clock.parts(int(time.time() // 60))[: DEPTH[metric]]

    def cached(self, account: str, event: str, metric: str) -> Figure | None:
        """The figure read lately, while fresh; `view` keeps it up to date. Else None."""
        entry = self._shown.get((account, event), {}).get(self._figure(metric))
        if entry is None or entry.until <= time.monotonic():
            return None
        return entry

    async def read(self, account: str, event: str, metric: str, visitor: str = "") -> int:
        """The figure to draw, read from the store (one read per figure at a time).

        `visitor` is this view's hash when it was counted: a sketch read from the
        store lacks the visitors not flushed yet, so they are kept beside it.
        """
        ident, figure = (account, event), self._figure(metric)
        entry = self._shown.get(ident, {}).get(figure)
        reading = self._reading.get((ident, figure))
        if reading is None:
            parts = figure[1]
            read = (
                self.stats.store.unique(self.unique_key(account, event, parts))
                if metric == "unique"
                else self.stats.total(account, event, parts)
            )
            reading = asyncio.ensure_future(read)
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
                return count + (metric == "unique" and visitor != "")
        if metric == "unique" and visitor:
            entry.visitors.add(visitor)
        return entry.count + len(entry.visitors)

    def _keep(self, ident: _Id, figure: _Figure, fut: asyncio.Future[int]) -> None:
        self._reading.pop((ident, figure), None)
        if fut.cancelled() or fut.exception() is not None:
            return
        figures = self._shown.get(ident)
        if figures is None:
            if len(self._shown) >= self.max_entries:
                del self._shown[next(iter(self._shown))]
            figures = self._shown[ident] = {}
        figures[figure] = Figure(fut.result(), time.monotonic() + self.refresh)
