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
from collections.abc import Awaitable
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
class _Shown:
    count: int
    until: float  # monotonic time until which the count is reused
    visitors: set[str] = field(default_factory=set)  # unique: new since the read


class BadgeCounts:
    def __init__(
        self,
        stats: Stats,
        aggregator: Aggregator,
        metrics: Metrics,
        visitors: Visitors | None = None,
        refresh: float = 2.0,
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
        self._shown: dict[_Id, dict[_Figure, _Shown]] = {}
        self._reading: dict[tuple[_Id, _Figure], asyncio.Future[int]] = {}

    def hit(self, account: str, event: str) -> None:
        """Count one view now: one dictionary update, like any other event."""
        agg = self.aggregator
        agg.check_capacity()
        cell = (account, event, int(time.time() // 60), None)
        agg.pending[cell] = agg.pending.get(cell, 0) + 1
        agg.grew()
        self.metrics.accept(SOURCE, 1)
        for figure, entry in self._shown.get((account, event), {}).items():
            if figure[0] != "unique":
                entry.count += 1

    def unique_key(self, account: str, event: str, day: tuple[str, ...]) -> str:
        return self.stats.keys.unique(escape(account), escape(event), day)

    async def shown(
        self,
        account: str,
        event: str,
        metric: str,
        counted: bool,
        client: str = "",
        user_agent: bytes = b"",
    ) -> int:
        """The figure to draw for `metric` of (account, event), including this view.

        For `unique`, the visitor is known by `client` (address) and `user_agent`.
        """
        minute = int(time.time() // 60)
        parts = self.stats.clock.parts(minute)[: DEPTH[metric]]
        ident, figure = (account, event), (metric, parts)
        read: Awaitable[int]
        visitor = ""
        if counted:
            # Every view is a visitor of the day, whichever figure its badge shows.
            day = parts if metric == "unique" else self.stats.clock.parts(minute)[:3]
            visitor = self.visitors.hash("/".join(day), client, user_agent)
            self.aggregator.add_unique(
                self.unique_key(account, event, day), visitor, int(time.time()) + UNIQUE_KEEP
            )
        if metric != "unique":
            visitor = ""
        entry = self._shown.get(ident, {}).get(figure)
        if entry is None or entry.until <= time.monotonic():
            reading = self._reading.get((ident, figure))
            if reading is None:
                # One read per figure at a time; views meanwhile share its answer.
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
                    return count + (visitor != "")
        # Counts had this view added by `hit`; a sketch read from the store lacks the
        # visitors not flushed yet, so they are kept beside it until the next read.
        if visitor:
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
        figures[figure] = _Shown(fut.result(), time.monotonic() + self.refresh)
