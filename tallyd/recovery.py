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
from tallyd.journal import Journal, keep_ids, read_node, recent_ids, segments, sync_dir
from tallyd.stores.base import Batch, StoreError

log = logging.getLogger("tallyd.journal")


@dataclass
class Recovered:
    batches: int = 0
    already: int = 0  # batches the store had applied before the crash
    events: int = 0
    ids: int = 0


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
        seen(key)
        n += 1
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
