"""Start-up with `--durable`: settle what an earlier run's journal owes the store.

Every batch a journal describes is rebuilt and applied again under the node and
number it had: the store applies each (node, seq) at most once, so a batch that
made it before the crash changes nothing and one that did not is counted now.
Only then are the old segments deleted, and the new run starts its own journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from tallyd.aggregator import Aggregator
from tallyd.journal import Journal, Lock, keep_ids, read_node, recent_ids, segments, sync_dir
from tallyd.stores.base import Batch, StoreError

log = logging.getLogger("tallyd.journal")


@dataclass
class Recovered:
    batches: int = 0
    already: int = 0  # batches the store had applied before the crash
    events: int = 0
    ids: int = 0
    damage: int = 0


async def open_journal(
    directory: Path, agg: Aggregator, durable: bool, store: str, wait: float
) -> tuple[Journal, Lock] | None:
    """Settle what `directory` holds and, with `durable`, start this run's journal.

    A journal left by an earlier durable run is replayed whatever the flags (a
    start without --durable must not leave acknowledged events behind, nor refuse
    their re-sending as duplicates); its directory is locked meanwhile. `store`
    names the store the counts go to: a journal written for another is refused.
    """
    owed = directory.is_dir() and bool(segments(directory))
    if not durable and not owed:
        if directory.is_dir():
            remembered = await asyncio.to_thread(remember_ids, directory, agg)
            if remembered:
                log.info("%d event id(s) remembered from %s", remembered, directory)
        return None
    lock = Lock(directory)
    try:
        if owed:
            check_store(directory, store)
        done = await recover(directory, agg, wait)
        agg.metrics.counter(
            "tallyd_journal_replayed_batches_total",
            "Batches replayed from an earlier run's journal at start.",
            lambda: done.batches,
        )
        agg.metrics.counter(
            "tallyd_journal_damage_total",
            "Damaged or torn places found in the journal at start (never counted).",
            lambda: done.damage,
        )
        if not durable:
            lock.release()
            return None
        (directory / STORE_FILE).write_text(store + "\n")
        sync_dir(directory)
        return start(directory, agg), lock
    except BaseException:
        lock.release()
        raise


# The store a journal's counts belong to, written beside them.
STORE_FILE = "store"


def check_store(directory: Path, store: str) -> None:
    try:
        theirs = (directory / STORE_FILE).read_text().strip()
    except FileNotFoundError:
        return
    if theirs != store:
        raise OSError(
            f"the journal in {directory} holds counts for {theirs}, not {store}: start with "
            "that store to write them, or move the journal away"
        )


async def recover(directory: Path, agg: Aggregator, wait: float) -> Recovered:
    """Apply every old node's journal (retrying a failing store for up to `wait`
    seconds), delete it, and remember the ids of the de-duplication window."""
    out = Recovered()
    for node, paths in segments(directory).items():
        if node == agg.node:
            continue
        replay = await asyncio.to_thread(read_node, node, paths)
        for problem in replay.damage:
            log.warning("journal: %s", problem)
        out.damage += len(replay.damage)
        for seq, cells in replay.batches:
            batch = await asyncio.to_thread(agg.expander.build, node, seq, cells)
            applied = await _apply(agg, batch, wait)
            out.batches += 1
            out.already += not applied
        out.events += replay.events
        await asyncio.to_thread(keep_ids, directory, f"{node}-replayed", replay.ids)
        for p in paths:
            p.unlink(missing_ok=True)
        sync_dir(directory)
    out.ids = remember_ids(directory, agg)
    if out.batches or out.ids:
        log.info(
            "journal: %d batch(es) replayed (%d already in the store, %d event(s) in all); "
            "%d event id(s) remembered",
            out.batches,
            out.already,
            out.events,
            out.ids,
        )
    return out


async def _apply(agg: Aggregator, batch: Batch, wait: float) -> bool:
    deadline = time.monotonic() + wait
    backoff = 0.1
    while True:
        try:
            return await agg.store.apply(batch)
        except StoreError as exc:
            if time.monotonic() + backoff > deadline:
                raise StoreError(f"cannot replay the journal: {exc}") from exc
            log.warning("journal: replay: %s; retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def remember_ids(directory: Path, agg: Aggregator) -> int:
    """Remember the event ids that id files written within two windows hold."""
    seen = agg.dedup.seen
    n = 0
    for key in recent_ids(directory, time.time() - 2 * agg.dedup.window):
        n += not seen(key)  # each id once, though two files may both hold it
    return n


def save_ids(directory: Path, agg: Aggregator) -> int:
    """At a graceful stop without a journal: the ids remembered, for the next start."""
    ids = cast(list[tuple[str, str]], agg.dedup.ids())
    if ids:
        directory.mkdir(parents=True, exist_ok=True)
        keep_ids(directory, agg.node, ids)
    return len(ids)


def start(directory: Path, agg: Aggregator) -> Journal:
    """This run's journal, feeding the aggregator."""
    journal = Journal(
        directory, agg.node, asyncio.get_running_loop(), agg.on_synced, agg.dedup.window
    )
    agg.open_journal(journal)
    return journal
