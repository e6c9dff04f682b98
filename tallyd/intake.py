"""Where every ingest source hands over its events.

One place counts, parses what the fast path passed over, and accounts for
rejections (metric + rate-limited log line), so HTTP, ZeroMQ and syslog behave
the same on bad input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tallyd.aggregator import Aggregator
from tallyd.events import NEW_NAME_LIMIT, Cell, Event, Rejected, RejectLog, decoded, parse_many
from tallyd.hotpath import Counter, NameCache, count_body, count_objs
from tallyd.limits import NewNames
from tallyd.metrics import Metrics
from tallyd.pace import Pace
from tallyd.shard import Shard

MAX_COARSE = 100_000
# Events parsed in one go before the event loop gets a turn (`settle_fairly`).
SLICE = 16
COARSE_RENEW = 60.0


def _index(rejection: tuple[int, Rejected]) -> int:
    return rejection[0]


@dataclass
class Counted:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, Rejected]]


class Intake:
    def __init__(
        self,
        aggregator: Aggregator,
        metrics: Metrics,
        breakdowns: dict[str, str],
        new_per_minute: int = 0,
    ) -> None:
        self.aggregator = aggregator
        self.metrics = metrics
        self.breakdowns = breakdowns
        self.reject_log = RejectLog()
        # Names that passed full validation once: later events with them take the fast path.
        self.known: set[str] = set()
        # Bus events left to the nodes (or workers) of other shards.
        self.other_shards = 0
        # Names new to the process, at most so many a minute (badges share it).
        self.new_names = NewNames(self.known, new_per_minute)
        metrics.counter(
            "tallyd_new_names_refused_total",
            "Events and badge views refused: new accounts, event types or badge ids came too fast.",
            lambda: self.new_names.refused,
        )
        self._names = NameCache()
        # Event minute → the minute it is counted at (`Expander.coarse_minute`). Past
        # retention stays past, but what is kept today may not be tomorrow: renewed.
        self._coarse: dict[int, int] = {}
        self._coarse_until = 0.0

    def counter(
        self, now: float, cells: dict[Cell, int] | None = None, shard: Shard | None = None
    ) -> Counter:
        """A fast-path counter into `cells` (by default where the aggregator counts);
        with a `shard`, it skips the events of accounts the shard does not own."""
        agg = self.aggregator
        if now >= self._coarse_until or len(self._coarse) > MAX_COARSE:
            self._coarse = {}
            self._coarse_until = now + COARSE_RENEW
        return Counter(
            self.known,
            self.breakdowns,
            int(now // 60),
            agg.cells() if cells is None else cells,
            [],
            self._coarse,
            agg.expander.coarse_minute,
            self._names,
            shard,
            # A shard's node holds only its own names to the limit: its full parser decides.
            new_room=-1 if shard is not None else self.new_names.room(),
        )

    def refusals(self, source: str, counter: Counter) -> None:
        """Meter and log the events `counter` refused past the limit on new names,
        as the full parser's refusals of them are."""
        if counter.refused:
            self.new_names.refuse(len(counter.refused))
            self._reject(source, NEW_NAME_LIMIT, len(counter.refused))

    def count_many(self, objs: list[Any], source: str, now: float | None = None) -> Counted:
        """Count decoded events; rejections are logged, metered and returned by index."""
        now = time.time() if now is None else now
        return self.settle(source, *self._fast_pass(objs, now), now)

    async def count_many_fairly(self, objs: list[Any], source: str) -> Counted:
        """`count_many` for a large body: what the fast path passes over is parsed in
        slices, yielding to the event loop between them (see `settle_fairly`)."""
        now = time.time()
        return await self.settle_fairly(source, *self._fast_pass(objs, now), now)

    def _fast_pass(
        self, objs: list[Any], now: float
    ) -> tuple[list[Event], int, list[tuple[int, Any]]]:
        """Count what the fast path takes: (ids it queued, events counted, the rest)."""
        counter = self.counter(now)
        slow: list[tuple[int, Any]] = []
        fast = count_objs(counter, objs, slow)
        return counter.ids, fast, slow

    async def count_body(self, body: bytes, source: str) -> Counted | None:
        """Count the events of an HTTP body read in place (one event, an array or
        NDJSON); None when the body must be decoded whole, and nothing was counted."""
        now = time.time()
        cells: dict[Cell, int] = {}
        counter = self.counter(now, cells)
        raw: list[tuple[int, bytes]] = []
        if count_body(counter, body, raw) < 0:
            return None
        into = self.aggregator.cells()
        fast = 0
        for k, v in cells.items():
            into[k] = into.get(k, 0) + v
            fast += v
        self.refusals(source, counter)
        out = await self.settle_fairly(source, counter.ids, fast, raw, now, decode=True)
        if counter.refused:
            # In the body's order, as the full parser would have listed them.
            refused = [(i, NEW_NAME_LIMIT) for i in counter.refused]
            out.rejected = sorted(out.rejected + refused, key=_index) if out.rejected else refused
        return out

    async def settle_fairly(
        self,
        source: str,
        ids: list[Event],
        fast: int,
        slow: list[tuple[int, Any]],
        now: float,
        decode: bool = False,
    ) -> Counted:
        """`settle` in slices of SLICE events, in paced turns of the event loop
        (tallyd.pace): a body of events the fast path cannot take (new names, odd
        shapes) costs some microseconds an event, and other clients must not wait for
        all of it at once. With `decode`, `slow` holds raw JSON items, decoded per slice."""
        out = Counted(fast, 0, [])
        pace = Pace()
        for start in range(0, max(len(slow), 1), SLICE):
            if start:
                await pace.turn()
            part = slow[start : start + SLICE]
            if decode:
                part = [(i, decoded(item, "this event")) for i, item in part]
            got = self.settle(source, ids if not start else [], 0, part, now)
            out.accepted += got.accepted
            out.duplicates += got.duplicates
            out.rejected += got.rejected
        if fast:
            self.metrics.accept(source, fast)
        return out

    def settle(
        self,
        source: str,
        ids: list[Event],
        fast: int,
        slow: list[tuple[int, Any]],
        now: float,
        shard: Shard | None = None,
    ) -> Counted:
        """Finish what a fast pass left: the events it queued for de-duplication
        (`ids`, the counter's) and those it passed over (`slow`, parsed here); with
        a `shard`, those of accounts it does not own are dropped."""
        cells, with_ids, rejected = parse_many(
            slow, self.breakdowns, now, self.known, self.new_names.admit_for(shard)
        )
        if shard is not None:
            parsed = len(cells) + len(with_ids)
            cells = [c for c in cells if shard.owns(c[0])]
            with_ids = [e for e in with_ids if shard.owns(e[0])]
            self.other_shards += parsed - len(cells) - len(with_ids)
        if rejected:
            self.reject_all(source, rejected)
        agg = self.aggregator
        if cells:
            into = agg.cells()
            for k in cells:
                into[k] = into.get(k, 0) + 1
        if with_ids:
            ids = ids + with_ids
        added = agg.counted(ids)
        accepted = fast + len(cells) + added
        if accepted:
            self.metrics.accept(source, accepted)
        duplicates = len(ids) - added
        self.metrics.duplicates += duplicates
        return Counted(accepted, duplicates, rejected)

    def reject_all(self, source: str, rejected: list[tuple[int, Rejected]]) -> None:
        """Refused events metered, and logged as the rate allows, once per reason: a
        flood's body is a thousand of one reason."""
        first: dict[str, list[Any]] = {}  # reason → [its first error, how many]
        for _, err in rejected:
            seen = first.get(err.reason)
            if seen is None:
                first[err.reason] = [err, 1]
            else:
                seen[1] += 1
        for err, n in first.values():
            self._reject(source, err, n)

    def _reject(self, source: str, err: Rejected, n: int) -> None:
        self.metrics.reject(source, err.reason, n)
        self.reject_log(source, err, n)
