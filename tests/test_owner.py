"""Owner actions: an id's baseline, resetting and deleting its counts, behind the admin token.

The store half runs on every backend (the `store` fixture); the HTTP half on real
`tallyd serve` processes over SQLite, Redis and a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tallyd.aggregator import Aggregator
from tallyd.expand import Expander
from tallyd.keys import BASELINE, KeySpace
from tallyd.metrics import Metrics
from tallyd.owner import stored_keys
from tallyd.periods import Clock
from tallyd.retention import Retention
from tallyd.stats import Stats
from tallyd.stores import Store
from tallyd.stores.base import Edit

NOW = int(time.time() // 60)
TODAY = Clock("UTC").parts(NOW)[:3]
LAST_YEAR = NOW - 400 * 1440  # another year, month and day


@contextlib.asynccontextmanager
async def running(store: Store) -> AsyncIterator[tuple[Aggregator, Stats]]:
    """An aggregator with its flush loop, as `tallyd serve` runs it."""
    keys, clock, retention = KeySpace(), Clock("UTC"), Retention()
    agg = Aggregator(store, Expander(keys, clock, retention), Metrics(), flush_interval=0.05)
    loop = asyncio.create_task(agg.run())
    try:
        yield agg, Stats(store, keys, clock, agg, retention=retention)
    finally:
        agg.stop()
        await loop


def hits(agg: Aggregator, account: str, n: int, minute: int = NOW, event: str = "hit") -> None:
    for _ in range(n):
        agg.add((account, event, minute, None, None))


async def totals(stats: Stats, account: str, event: str = "hit") -> tuple[int, int]:
    """(all time, today) as a badge reads them."""
    total, today = await stats.totals([(account, event, ()), (account, event, TODAY)])
    return total, today


async def erase(agg: Aggregator, stats: Stats, account: str, forget: bool) -> Edit:
    """A reset (or, `forget`, a delete) as the HTTP handler makes it."""
    async with agg.exclusive():
        change = await stored_keys(stats.store, stats.keys, account, "hit", forget)
        await stats.store.edit(change)
        if forget:
            agg.forget()
    return change


async def test_a_baseline_is_in_the_total_and_not_in_today(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 3)
        await agg.flushed()
        key = stats.keys.baseline("o%2Fr", "hit")
        await store.edit(Edit(fields={key: {BASELINE: 1000}}))
        hits(agg, "o/r", 2)  # pending: read with the store's counts
        assert await totals(stats, "o/r") == (1005, 5)
        # Not in the rollups: they count events, and a baseline is none.
        assert await totals(stats, "o/*") == (5, 5)
        assert await totals(stats, "all") == (5, 5)
        await store.edit(Edit(fields={key: {BASELINE: 0}}))  # 0 takes it away
        assert await totals(stats, "o/r") == (5, 5)


async def test_a_reset_empties_every_period_of_the_id_and_nothing_else(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 4)
        hits(agg, "o/r", 2, LAST_YEAR)
        hits(agg, "o/other", 7)
        agg.add(("o/r", "order", NOW, "paid", None))  # another event of the account: kept
        await agg.flushed()
        await store.edit(Edit(fields={stats.keys.baseline("o%2Fr", "hit"): {BASELINE: 50}}))
        hits(agg, "o/r", 1)  # not flushed yet: the reset writes it first, then erases it
        assert await totals(stats, "o/r") == (57, 5)

        change = await erase(agg, stats, "o/r", forget=False)
        # All time, 2 years, 2 months, 2 days, 2 hours, 4 funnels, 2 sketches and the baseline.
        assert len(change.drop) == 16
        await agg.flushed()  # nothing left to undo it
        assert await totals(stats, "o/r") == (0, 0)
        assert await totals(stats, "o/other") == (7, 7)
        assert await totals(stats, "o/r", "order") == (1, 1)
        assert await totals(stats, "all") == (14, 12)  # rollups keep what they counted
        day = stats.keys.ranking("hit", TODAY)
        assert [m for m, _ in await store.top(day, 10)] == ["o%2Fother"]
        # Still listed, and new hits count from zero.
        assert await store.members(stats.keys.accounts("hit"), "", "", 10) == ["o%2Fother", "o%2Fr"]
        hits(agg, "o/r", 2)
        await agg.flushed()
        assert await totals(stats, "o/r") == (2, 2)


async def test_a_delete_takes_the_id_out_of_the_listings_until_it_counts_again(
    store: Store,
) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 3)
        hits(agg, "o/other", 1)
        await agg.flushed()
        await erase(agg, stats, "o/r", forget=True)
        keys = stats.keys
        assert await store.members(keys.accounts("hit"), "", "", 10) == ["o%2Fother"]
        assert await store.members(keys.account_events("o%2Fr"), "", "", 10) == []
        assert await totals(stats, "o/r") == (0, 0)
        # The process forgot it wrote the id's index entries: its next hit lists it again.
        hits(agg, "o/r", 1)
        await agg.flushed()
        assert await store.members(keys.accounts("hit"), "", "", 10) == ["o%2Fother", "o%2Fr"]
        assert await store.members(keys.account_events("o%2Fr"), "", "", 10) == ["hit"]


async def test_counts_before_a_reset_are_written_first_and_never_after_it(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 10)
        await agg.flushed()
        hits(agg, "o/r", 5)  # pending when the reset begins
        async with agg.exclusive():
            assert not agg.pending, "every count before the reset is in the store"
            hits(agg, "o/r", 3)  # during it: written after it, as counts that came after
            change = await stored_keys(store, stats.keys, "o/r", "hit", False)
            await store.edit(change)
        await agg.flushed()
        assert await totals(stats, "o/r") == (3, 3)


async def test_no_batch_is_written_during_a_change(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 1)
        async with agg.exclusive():
            hits(agg, "o/r", 1)
            flushing = asyncio.create_task(agg.flush())
            await asyncio.sleep(0.2)  # four flush intervals
            assert not flushing.done()
            assert (await store.read([stats.keys.counter("o%2Fr", "hit")], "")).hashes[0] == {
                TODAY[0]: 1
            }
        await flushing
        await agg.flushed()
        assert await totals(stats, "o/r") == (2, 2)


async def test_flushed_returns_at_once_when_nothing_waits(store: Store) -> None:
    async with running(store) as (agg, _):
        await asyncio.wait_for(agg.flushed(), 1)


@pytest.mark.parametrize("account", ["all", "o/*"])
def test_rollups_are_no_ids(account: str) -> None:
    from tallyd.owner import _id
    from tallyd.web import HTTPError

    with pytest.raises(HTTPError) as err:
        _id(account, "hit")
    assert err.value.error == "reserved_account"
