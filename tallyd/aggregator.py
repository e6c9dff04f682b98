"""In-memory deltas and the flush loop (SPEC §3, §8).

Ingest calls `add`, which costs one dictionary update per event. Every
`flush_interval` (or sooner when a batch grows large) the pending cells are
swapped out, expanded into a `Batch` and written. A batch that fails stays
"in flight" and is retried, with the same (node, seq), until the store takes
it: the store applies each (node, seq) at most once, so a retry after a
timeout can never count twice. New events meanwhile merge into fresh pending
cells, so memory grows with distinct cells, not with events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from tallyd.dedup import Dedup
from tallyd.events import Cell, Event
from tallyd.expand import Expander
from tallyd.journal import Journal
from tallyd.metrics import Metrics
from tallyd.rules import ROLLUP, prefix_rollup
from tallyd.stores import public_error
from tallyd.stores.base import Batch, Store, StoreUnusable

log = logging.getLogger("tallyd.aggregator")

PRUNE_EVERY = 60.0
# Seconds between pings of a store nothing was written to lately, and their limit.
PROBE_EVERY = 2.0
PROBE_TIMEOUT = 2.0
# The most cells one batch takes without a journal (see `_take`).
MAX_FLUSH_CELLS = 50_000
# The longest wait between two attempts at a failing store.
MAX_BACKOFF = 5.0
# New cells stopped coming this long ago: write them now (see `_until_flush`).
QUIET = 0.02
IDLE = 0.05
# Bounds on the memory of visitors already sent (see `add_unique`).
MAX_SENT_KEYS = 100_000
MAX_SENT_PER_KEY = 1_000


class Overloaded(Exception):
    """Too many distinct cells are waiting for the store; refuse new events."""


class CellIndex:
    """The cells of one dict of counts by what reads ask for: (account, event), with
    `owner/*` for accounts under an owner, and by event (the `all` rollup).

    A reader asked for one badge's cells by walking every unflushed cell: with
    thousands pending, a badge's first view cost milliseconds. The index is brought
    up to date when read, from the keys added since: a dict of counts only gains
    keys, at its end, until it is swapped out, so those are the first of `reversed`.
    """

    __slots__ = ("by_event", "by_pair", "counts", "seen")

    def __init__(self, counts: dict[Cell, int]) -> None:
        self.counts = counts
        self.seen = 0
        self.by_pair: dict[tuple[str, str], list[Cell]] = {}
        self.by_event: dict[str, list[Cell]] = {}

    def _catch_up(self) -> None:
        added = len(self.counts) - self.seen
        if not added:
            return
        by_pair, by_event = self.by_pair, self.by_event
        for cell in itertools.islice(reversed(self.counts), added):
            account, event = cell[0], cell[1]
            by_pair.setdefault((account, event), []).append(cell)
            by_event.setdefault(event, []).append(cell)
            owner = prefix_rollup(account)
            if owner is not None:
                by_pair.setdefault((owner, event), []).append(cell)
        self.seen += added

    def cells_of(self, account: str, event: str) -> list[Cell]:
        """The cells that count for `account`'s `event` (`rules.includes`)."""
        self._catch_up()
        if account == ROLLUP:
            return self.by_event.get(event, [])
        return self.by_pair.get((account, event), [])

    def events_of(self, account: str | None) -> set[str]:
        self._catch_up()
        if account is None:
            return set(self.by_event)
        return {e for a, e in self.by_pair if a == account}


@dataclass(frozen=True)
class Unflushed:
    """One view of the cells not yet known to be in the store, for every reader.

    Each cell comes with the batch it is (or will be) written in: a reader adds a
    cell only if its snapshot's batch marker for the key is below it."""

    pending: CellIndex
    upcoming: int  # the batch the pending cells will be written in
    inflight: CellIndex
    inflight_seq: int

    def select(self, account: str, event: str) -> Iterator[tuple[Cell, int, int]]:
        """(cell, count, batch) of the cells that count for `account`'s `event`."""
        for index, batch in ((self.pending, self.upcoming), (self.inflight, self.inflight_seq)):
            counts = index.counts
            for cell in index.cells_of(account, event):
                yield cell, counts[cell], batch

    def of(
        self, event: str, account: str | None
    ) -> Iterator[tuple[str, int, str | None, int, int]]:
        """(account, minute, value, count, batch) of one event's cells (one account's)."""
        for (a, _, m, b), n, batch in self.select(ROLLUP if account is None else account, event):
            yield a, m, b, n, batch

    def events(self, account: str | None) -> set[str]:
        """The events of the cells (one account's)."""
        return self.pending.events_of(account) | self.inflight.events_of(account)


# The view of an aggregator that holds nothing (a reader without one).
NOTHING = Unflushed(CellIndex({}), 1, CellIndex({}), 0)


class NotDurable(Overloaded):
    """The journal cannot be written: nothing can be acknowledged until it can."""


class _Record:
    """Cells counted in one turn of the event loop, on their way into the journal."""

    __slots__ = ("cells", "done", "ids", "number")

    def __init__(self) -> None:
        self.cells: dict[Cell, int] = {}
        self.ids: list[tuple[str, str]] = []
        self.number = 0
        # Resolved once the record is on disk and its cells are pending.
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Aggregator:
    def __init__(
        self,
        store: Store,
        expander: Expander,
        metrics: Metrics,
        *,
        flush_interval: float = 0.2,
        max_batch_cells: int = 10_000,
        max_pending_cells: int = 2_000_000,
        dedup: Dedup | None = None,
        wait_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.expander = expander
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.max_batch_cells = max_batch_cells
        self.max_pending_cells = max_pending_cells
        # The longest a client waits for its events to reach the store (?wait=flush).
        self.wait_timeout = wait_timeout
        # Not `dedup or Dedup()`: an empty Dedup is falsy (it has a length).
        self.dedup = dedup if dedup is not None else Dedup()
        # A fresh id per process: the store keeps the last seq applied per node.
        self.node = uuid.uuid4().hex[:16]
        self.seq = 0
        # Cells counted and not yet taken by a flush. Only `cells()`, `count` and
        # `counted` add to it (with a journal: `on_synced`, once they are on disk).
        self.pending: dict[Cell, int] = {}
        self._indexes: dict[int, CellIndex] = {}  # id of a dict of counts → its index
        self.journal: Journal | None = None
        self._open: _Record | None = None
        self._unsynced: deque[_Record] = deque()
        self._synced = 0
        self._merged_upto = 0
        self._synced_waiters: dict[int, asyncio.Future[None]] = {}
        # HyperLogLog key → visitor hashes, and when each key may expire.
        self.uniques: dict[str, set[str]] = {}
        self._unique_expiry: dict[str, int] = {}
        self._sent_uniques: dict[str, set[str]] = {}
        self._inflight_cells: dict[Cell, int] = {}
        self._inflight_seq = 0
        self._inflight_upto = 0
        self._inflight_cut = 0
        self._inflight: Batch | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._grown_at = 0.0
        self._building = False
        # The uniques and expiries of the batch taken, until its expansion succeeds.
        self._taken: tuple[dict[str, set[str]], dict[str, int]] | None = None
        # (seq, future): resolved once the batch numbered seq is in the store.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False
        # Held while a batch is built and written, and by an owner's change to the
        # store (`exclusive`), so neither sees the other half done.
        self._writing = asyncio.Lock()
        # Resolved with the batch number when the next batch is in the store (`next_flush`).
        self._next_flush: asyncio.Future[int] | None = None
        self.healthy = True
        self.last_error = ""
        self.last_flush_at = 0.0
        metrics.gauge(
            "tallyd_pending_cells",
            "Cells waiting to be flushed.",
            lambda: len(self.pending) + len(self._inflight_cells),
        )
        metrics.counter(
            "tallyd_dedup_early_rotations_total",
            "Times the remembered event ids were rotated before the window passed "
            "(too many ids: the window was shortened).",
            lambda: self.dedup.early_rotations,
        )
        metrics.gauge(
            "tallyd_store_up",
            "1 if the last store write succeeded.",
            lambda: 1.0 if self.healthy else 0.0,
        )

    # -- the way in: every source counts through these --------------------------

    def cells(self) -> dict[Cell, int]:
        """Where a pass of ingest counts events without an id (`cell → += 1`).

        The pending cells themselves, or, with a journal, the record being filled
        in this turn of the event loop. A pass ends with `counted`.
        """
        if self.journal is None:
            return self.pending
        rec = self._open
        if rec is None:
            rec = self._open = _Record()
            asyncio.get_running_loop().call_soon(self._close_open)
        return rec.cells

    def count(self, cell: Cell) -> None:
        """Count one event without an id (a badge view), with the capacity checks."""
        if len(self.pending) >= self.max_pending_cells:
            self.check_capacity()
        cells = self.cells()
        cells[cell] = cells.get(cell, 0) + 1
        # A stream of views is no pause: without this the flush loop took every
        # moment as quiet and wrote batch after batch, 21 a second under a badge
        # load instead of 5, at more than a third of a core.
        self.grew()

    def counted(self, events: list[Event]) -> int:
        """End a pass of ingest: count `events` (those with ids) once per id, note
        the new cells and let a waiting flush run. Returns how many were new."""
        added = self._count_ids(events) if events else 0
        self.grew()
        self.make_way()
        return added

    def add(self, ev: Event) -> bool:
        """Count one parsed event; False if its id was a duplicate."""
        return self.add_many([ev]) == 1

    def add_many(self, events: list[Event]) -> int:
        """Count parsed events; returns how many were not duplicates."""
        return self.counted(events)

    def _count_ids(self, events: list[Event]) -> int:
        cells = self.cells()
        seen = self.dedup.seen
        ids = self._open.ids if self._open is not None else None
        added = 0
        for account, event, minute, bval, eid in events:
            if eid is not None:
                if seen((account, eid)):
                    continue
                if ids is not None:
                    ids.append((account, eid))
            k = (account, event, minute, bval)
            cells[k] = cells.get(k, 0) + 1
            added += 1
        return added

    def grew(self) -> None:
        """Note new cells; start a flush early once they make a large batch."""
        self._grown_at = time.monotonic()
        if len(self.pending) >= self.max_batch_cells:
            self._wake.set()

    async def acknowledged(self) -> None:
        """Wait until everything counted so far is on disk (at once without a journal)."""
        last = self._open or (self._unsynced[-1] if self._unsynced else None)
        if last is not None:
            # Shielded: a waiter that gives up (a timeout, a client gone) must not
            # cancel the record's future, which every other waiter shares.
            await asyncio.shield(last.done)

    # -- the journal (`--durable`) ---------------------------------------------

    def open_journal(self, journal: Journal) -> None:
        self.journal = journal
        self.metrics.counter(
            "tallyd_journal_fsyncs_total",
            "Groups of journal records written and fsync'd (--durable).",
            lambda: journal.groups,
        )
        self.metrics.counter(
            "tallyd_journal_bytes_total",
            "Bytes written to the journal (--durable).",
            lambda: journal.synced_bytes,
        )

    def on_synced(self, number: int) -> None:
        """The journal's writer has everything up to record `number` on disk
        (-1: it failed). Records become pending cells, visible and flushable."""
        if number < 0:
            self.healthy = False
            err = self._journal_failed()
            self.last_error = str(err)
            for rec in self._unsynced:
                if not rec.done.done():
                    rec.done.set_exception(err)
                    rec.done.exception()  # retrieved: a source that did not wait is not an error
            for fut in self._synced_waiters.values():
                if not fut.done():
                    fut.set_exception(err)
            return
        self._synced = number
        p = self.pending
        unsynced = self._unsynced
        while unsynced and unsynced[0].number <= number:
            rec = unsynced.popleft()
            for k, v in rec.cells.items():
                p[k] = p.get(k, 0) + v
            self._merged_upto = rec.number
            rec.done.set_result(None)
        for n in [n for n in self._synced_waiters if n <= number]:
            fut = self._synced_waiters.pop(n)
            if not fut.done():
                fut.set_result(None)
        self.grew()

    def _close_open(self) -> None:
        rec, self._open = self._open, None
        if rec is None:
            return
        if not rec.cells:
            rec.done.set_result(None)
            return
        assert self.journal is not None
        if self.journal_down:
            rec.done.set_exception(self._journal_failed())
            rec.done.exception()
            return
        rec.number = self.journal.append_data(rec.cells, rec.ids)
        self._unsynced.append(rec)

    @property
    def journal_down(self) -> bool:
        """Whether there is a journal and it can no longer be written."""
        return self.journal is not None and self.journal.error is not None

    def _journal_failed(self) -> OSError:
        return OSError(f"the journal cannot be written: {self.journal and self.journal.error}")

    async def _on_disk(self, number: int) -> None:
        if self._synced >= number:
            return
        if self.journal_down:
            raise self._journal_failed()
        fut = self._synced_waiters.get(number)
        if fut is None:
            fut = self._synced_waiters[number] = asyncio.get_running_loop().create_future()
        await fut

    def add_unique(self, key: str, visitor: str, expire_at: int) -> bool:
        """Add a visitor hash to a distinct-visitors sketch with the next batch.
        Returns False when it was added before (it is in the sketch, or on its way)."""
        # Visitors already sent need not go again (adding is idempotent): most views
        # come from few visitors, e.g. everyone behind GitHub's image proxy.
        sent = self._sent_uniques.get(key)
        if sent is None:
            if len(self._sent_uniques) >= MAX_SENT_KEYS:
                self._sent_uniques.clear()
            sent = self._sent_uniques[key] = set()
        if visitor in sent:
            return False
        if len(sent) < MAX_SENT_PER_KEY:
            sent.add(visitor)
        pending = self.uniques.get(key)
        if pending is None:
            pending = self.uniques[key] = set()
            self._unique_expiry[key] = expire_at
        pending.add(visitor)
        return True

    def unwritten_visitors(self, key: str) -> set[str]:
        """The visitor hashes of a sketch no batch has written yet: those waiting for
        one, and those of the batch being built or written (the store has it only
        once it is written, and then it is no longer in flight here)."""
        visitors = set(self.uniques.get(key, ()))
        if self._taken is not None:
            visitors.update(self._taken[0].get(key, ()))
        if self._inflight is not None:
            visitors.update(self._inflight.uniques.get(key, ()))
        return visitors

    def make_way(self) -> None:
        """Hand the GIL to a flush building its batch in a thread, if one is.

        Ingest's compiled loops hold the GIL for a millisecond or more at a time:
        a thread that waits for it asks after the switch interval (tallyd.runtime),
        but compiled code does not look for the request until it runs Python again.
        Under load a build took three times its CPU time, and every flush behind it
        waited. Called after each chunk of ingest; free otherwise.
        """
        if self._building:
            time.sleep(0)  # releases the GIL; the waiting build thread takes it

    def behind(self) -> bool:
        """Whether a source that can wait should: the store is up but slower than
        ingest (a batch in flight and another full one waiting), or too many cells
        wait in all. A source that waits keeps memory to about two batches."""
        pending = len(self.pending)
        if self.journal_down:
            return True  # nothing read now could be made durable: leave it queued
        # `_inflight_cells` is set from the moment a flush takes the pending cells.
        return pending >= self.max_pending_cells or (
            self.healthy and bool(self._inflight_cells) and pending >= self.max_batch_cells
        )

    def check_capacity(self) -> None:
        """Raise `Overloaded` when the store has fallen too far behind, or the
        journal cannot take what would be acknowledged."""
        if self.journal_down:
            raise NotDurable(str(self._journal_failed()))
        if len(self.pending) >= self.max_pending_cells:
            raise Overloaded(
                f"{len(self.pending)} cells are waiting for the store ({self.last_error or 'slow'})"
            )

    async def flushed(self) -> None:
        """Wait until everything added so far is in the store."""
        await self.acknowledged()
        if self.pending or self.uniques:
            # Pending cells always go into the next batch number, whatever is in flight.
            last = self.seq + 1
        elif self._inflight is not None or self._taken is not None:
            last = self.seq
        else:
            return  # nothing waits: no batch would ever resolve a waiter
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((last, fut))
        self._wake.set()
        await fut

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Everything counted so far in the store, then no batch written until the
        block ends: an owner's change (tallyd.owner) made in it is not undone by a
        later flush of counts that arrived before it. Counts arriving meanwhile wait
        in memory and are written after it, as counts that came after the change."""
        await asyncio.wait_for(self.flushed(), self.wait_timeout)
        async with self._writing:
            yield

    def forget(self) -> None:
        """Forget what this process remembers writing, after an owner deleted an id:
        its index entries then go with its next cells, its visitors again. A new
        expander remembers nothing (forgetting is always safe, if a batch dearer)."""
        old = self.expander
        self.expander = Expander(old.keys, old.clock, old.retention)
        self._sent_uniques.clear()

    def next_flush(self) -> asyncio.Future[int]:
        """A future resolved with its number when the next batch is in the store.

        Shared by every caller until then: await it without cancelling it
        (`asyncio.wait`, or `asyncio.shield`).
        """
        fut = self._next_flush
        if fut is None or fut.done():
            fut = self._next_flush = asyncio.get_running_loop().create_future()
        return fut

    # -- reads --------------------------------------------------------------

    def unflushed(self) -> Unflushed:
        """What the store may not hold yet. Take it before reading the store: the
        dicts it holds are swapped out, never emptied, so a batch written meanwhile
        is still in it, and the snapshot's batch marker tells which to add."""
        pending, inflight = self._index_of(self.pending), self._index_of(self._inflight_cells)
        return Unflushed(pending, self.seq + 1, inflight, self._inflight_seq)

    def _index_of(self, counts: dict[Cell, int]) -> CellIndex:
        """The index of one of the two dicts of counts, kept while it is current (a
        view taken earlier holds its own)."""
        index = self._indexes.get(id(counts))
        if index is None or index.counts is not counts:
            current = (self.pending, self._inflight_cells)
            self._indexes = {
                k: v for k, v in self._indexes.items() if any(v.counts is c for c in current)
            }
            index = self._indexes[id(counts)] = CellIndex(counts)
        return index

    # -- flushing -----------------------------------------------------------

    async def flush(self) -> int:
        """Write the in-flight batch, or the pending cells as a new one.

        Returns the source cells written; raises on a store error, leaving the
        batch in flight for the next call.
        """
        async with self._writing:
            return await self._flush()

    async def _flush(self) -> int:
        if self._inflight is None:
            if self._taken is None:
                if not self.pending and not self.uniques:
                    return 0
                cells, self.pending = self._take()
                self._taken = (self.uniques, self._unique_expiry)
                self.uniques, self._unique_expiry = {}, {}
                self.seq += 1
                self._inflight_cells, self._inflight_seq = cells, self.seq
                self._inflight_upto = self._merged_upto
                if self.journal is not None:
                    self._inflight_cut = self.journal.append_cut(self.seq, self._merged_upto)
            # else: the expansion of the batch taken failed; it is built again, never
            # dropped (its cells stay in flight, and readers keep seeing them).
            uniques, expiry = self._taken
            # Expansion is CPU work: a thread keeps the event loop answering meanwhile.
            self._building = True
            try:
                batch = await asyncio.to_thread(
                    self.expander.build, self.node, self.seq, self._inflight_cells
                )
            except Exception as exc:
                self.healthy = False
                self.last_error = f"cannot expand a batch: {exc}"
                log.exception("cannot expand batch %d (kept, tried again)", self.seq)
                raise
            finally:
                self._building = False
            batch.uniques = {k: list(v) for k, v in uniques.items()}
            batch.expire_at.update(expiry)
            self._inflight = batch
            self._taken = None
        batch = self._inflight
        t0 = time.perf_counter()
        try:
            # The cut is on disk before the batch goes to the store: a batch the
            # store may hold is one the journal can rebuild exactly. If the journal
            # failed (OSError), nothing reaches its disk any more, so this batch holds
            # every record that did, and a replay would rebuild exactly it as the batch
            # after the last cut on disk, under this same number: writing it is safe,
            # and the only way its acknowledged events are not lost.
            with contextlib.suppress(OSError):
                await self._on_disk(self._inflight_cut)
            applied = await self.store.apply(batch)
        except Exception as exc:
            self.metrics.store_errors += 1
            self.healthy = False
            self.last_error = public_error(str(exc) or type(exc).__name__)
            raise
        m = self.metrics
        m.flushes += 1
        m.flush_seconds += time.perf_counter() - t0
        m.flush_cells += batch.cells
        m.last_flush_cells = batch.cell_count()
        m.flushed_counter_cells += m.last_flush_cells
        if not applied:
            m.replayed_batches += 1
        self._inflight = None
        self._inflight_cells = {}
        if self.journal is not None:
            self.journal.release(self._inflight_upto)
        if self._waiters:
            still = []
            for seq, fut in self._waiters:
                if seq <= batch.seq:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((seq, fut))
            self._waiters = still
        if self._next_flush is not None:
            if not self._next_flush.done():
                self._next_flush.set_result(batch.seq)
            self._next_flush = None
        if self.journal_down:
            return batch.cells  # still unhealthy: nothing new can be made durable
        if not self.healthy:
            log.warning("store is back: batch %d written", batch.seq)
        self.healthy = True
        self.last_error = ""
        self.last_flush_at = time.time()
        return batch.cells

    def _take(self) -> tuple[dict[Cell, int], dict[Cell, int]]:
        """(the cells of the next batch, the cells left pending).

        After an outage the backlog can hold a million cells; expanding them all in
        one batch took hundreds of megabytes at once. Without a journal a batch takes
        at most MAX_FLUSH_CELLS (both dicts are new: a reader's view holds the old).
        With one, a batch must hold every record up to its cut, so it takes all.
        """
        pending = self.pending
        if self.journal is not None or len(pending) <= MAX_FLUSH_CELLS:
            return pending, {}
        items = iter(pending.items())
        taken = dict(itertools.islice(items, MAX_FLUSH_CELLS))
        rest = dict(items)
        self._wake.set()  # the rest goes next, without waiting out the interval
        # A client waiting for this batch (?wait=flush) may have events in the rest.
        upcoming = self.seq + 1
        self._waiters = [(s + 1 if s == upcoming else s, f) for s, f in self._waiters]
        return taken, rest

    async def run(self) -> None:
        """Flush every interval until `stop`; back off while the store fails."""
        backoff = 0.0
        next_prune = time.monotonic() + PRUNE_EVERY
        next_probe = 0.0
        told = ""  # what an unusable store was last said to be: said once
        while not self._stopping:
            if backoff:
                # Only a stop cuts a back-off short: the early-flush wake-ups of a
                # growing backlog would otherwise retry a failing store nonstop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), backoff)
            else:
                await self._until_flush(self.flush_interval, quiet=True)
            self._wake.clear()
            if self._stopping:
                break
            try:
                if not await self.flush() and time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + PROBE_EVERY
                    await self._probe()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    self.metrics.pruned_keys += await self.store.prune(int(time.time()))
                backoff = 0.0
            except StoreUnusable as exc:
                # Waiting will not mend it (a file deleted under tallyd): one line,
                # and the counts stay in memory, tried again, until tallyd stops.
                backoff = MAX_BACKOFF
                if str(exc) != told:
                    told = str(exc)
                    log.error("flush failed: %s; counts are kept until tallyd stops", exc)
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                # One line an attempt, in the store's own words.
                log.error("flush failed, retrying in %.1fs: %s", backoff, exc)

    async def _probe(self) -> None:
        """Ask the store whether it answers, when nothing was written: an idle
        service learned of an outage only from the next write, and /healthz said
        "ok" meanwhile. Raises as a failed flush does; an answer after a failure
        makes the service healthy again, unless counts still wait or the journal
        is down."""
        try:
            await asyncio.wait_for(self.store.ping(), PROBE_TIMEOUT)
        except Exception as exc:
            self.healthy = False
            self.last_error = public_error(str(exc) or type(exc).__name__)
            raise
        if not self.healthy and not self.journal_down and self._inflight is None:
            self.healthy = True
            self.last_error = ""

    async def _until_flush(self, interval: float, quiet: bool) -> None:
        """Wait out the interval, unless woken, or (`quiet`) unless new cells stop
        coming for QUIET seconds: a burst's last events would otherwise wait up to
        the interval, and a pause in any source is the cheapest moment to write."""
        deadline = time.monotonic() + interval
        while True:
            now = time.monotonic()
            timeout = deadline - now
            if quiet:
                # Until cells arrive, look again now and then (they do not wake us).
                pause = self._grown_at + QUIET - now if self.pending or self.uniques else IDLE
                timeout = min(timeout, pause)
            if timeout <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                return
            except TimeoutError:
                continue

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._stopped.set()

    async def drain(self, timeout: float = 30.0) -> int:
        """Flush everything left; returns the cells that could not be written."""
        deadline = time.monotonic() + timeout
        backoff = 0.1
        if self.journal is not None:
            self._close_open()
            try:
                await asyncio.wait_for(self.acknowledged(), timeout)
            except (OSError, TimeoutError) as exc:
                log.error("journal: the last records are not on disk: %s", exc)
        while self.pending or self.uniques or self._inflight is not None or self._taken:
            try:
                await self.flush()
            except Exception as exc:
                # An unusable store (a file deleted under tallyd) will not be by the
                # deadline either: no reason to hold the stop for it.
                if isinstance(exc, StoreUnusable) or time.monotonic() + backoff > deadline:
                    lost = len(self.pending) + len(self._inflight_cells)
                    log.error("store unreachable at shutdown (%s): %d cells not written", exc, lost)
                    return lost
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        return 0
