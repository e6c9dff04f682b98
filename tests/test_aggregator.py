"""The aggregator with a real SQLite store: merging, flushing, reads in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyd.aggregator import Aggregator, CellIndex, Overloaded, Unflushed
from tallyd.dedup import Dedup
from tallyd.events import Cell
from tallyd.expand import Expander
from tallyd.keys import KeySpace
from tallyd.metrics import Metrics
from tallyd.periods import Clock, Period
from tallyd.retention import Retention
from tallyd.rules import includes
from tallyd.stats import Stats
from tallyd.stores import Store, open_store

MINUTE = 1_378_389_787 // 60  # 2013-09-05T14:03Z


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/agg.db")
    await s.open()
    yield s
    await s.close()


def make(store: Store, **kw: object) -> tuple[Aggregator, Stats]:
    keys, clock = KeySpace(), Clock("UTC")
    # Retention off: these tests replay 2013 and read its minutes.
    retention = Retention(0, 0)
    agg = Aggregator(store, Expander(keys, clock, retention), Metrics(), **kw)  # type: ignore[arg-type]
    return agg, Stats(store, keys, clock, agg, retention=retention)


async def test_events_merge_into_cells(store: Store) -> None:
    agg, _ = make(store)
    for _ in range(1000):
        agg.add(("acme", "pageview", MINUTE, None, None))
    agg.add(("ben", "pageview", MINUTE, None, None))
    assert agg.pending == {
        ("acme", "pageview", MINUTE, None): 1000,
        ("ben", "pageview", MINUTE, None): 1,
    }


async def test_reads_include_unflushed_and_in_flight_counts_once(store: Store) -> None:
    agg, stats = make(store)
    period = Period(2013, 9, 5, 14)
    total = 0
    for round_ in range(30):
        for _ in range(7):
            agg.add(("acme", "pageview", MINUTE + round_ % 3, None, None))
        total += 7
        flushing = asyncio.create_task(agg.flush())
        # Read while the batch is being expanded and written, and after.
        for _ in range(3):
            answer = await stats.period("acme", "pageview", period)
            assert answer["total"] == total
            rollup = await stats.period("all", "pageview", period)
            assert rollup["total"] == total
            await asyncio.sleep(0)
        await flushing
    answer = await stats.period("acme", "pageview", period)
    assert answer["data"]["3"] == answer["data"]["4"] == answer["data"]["5"] == 70


async def test_duplicate_ids_count_once(store: Store) -> None:
    agg, stats = make(store, dedup=Dedup(window=60))
    assert agg.add(("acme", "order", MINUTE, "paid", "e-1"))
    assert not agg.add(("acme", "order", MINUTE, "paid", "e-1"))
    assert agg.add(("ben", "order", MINUTE, "paid", "e-1"))  # ids are per account
    await agg.flush()
    assert (await stats.funnel("all", "order", Period(2013)))["data"] == {"paid": 2}


async def test_flushed_waits_for_the_store(store: Store) -> None:
    agg, _ = make(store, flush_interval=0.05)
    runner = asyncio.create_task(agg.run())
    agg.add(("acme", "pageview", MINUTE, None, None))
    await asyncio.wait_for(agg.flushed(), 5)
    snap = await store.read(["acme/pageview/2013/09/05/14"], agg.node)
    assert snap.hashes == [{"03": 1}]
    agg.stop()
    await runner


async def test_capacity_limit(store: Store) -> None:
    agg, _ = make(store, max_pending_cells=3)
    for m in range(3):
        agg.add(("a", "e", MINUTE + m, None, None))
    with pytest.raises(Overloaded):
        agg.check_capacity()
    await agg.flush()
    agg.check_capacity()


async def test_dedup_window_is_bounded() -> None:
    d = Dedup(window=3600, max_ids=10)
    for i in range(100):
        assert not d.seen(i)
    assert len(d) <= 10
    assert d.seen(99)


def test_an_id_is_remembered_at_least_the_window_and_less_than_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("tallyd.dedup.time.monotonic", lambda: now[0])
    d = Dedup(window=10)
    # Seen at the start, the middle and the end of a window, however sparse the rest.
    for i, start in enumerate((1000.0, 1005.0, 1009.99)):
        key = ("acme", f"e{i}")
        now[0] = start
        assert not d.seen(key)
        now[0] = start + 9.99
        assert d.seen(key)
        now[0] = start + 20.0
        assert not d.seen(key), "remembered twice the window"
    assert d.early_rotations == 0


async def test_a_source_that_can_wait_is_held_to_about_two_batches(store: Store) -> None:
    agg, _ = make(store, max_batch_cells=10, max_pending_cells=100)
    for i in range(10):
        agg.add((f"a{i}", "pageview", MINUTE, None, None))
    assert not agg.behind()  # nothing in flight: the flush will take these
    flushing = asyncio.create_task(agg.flush())
    await asyncio.sleep(0)  # the flush has taken the cells and is expanding them
    for i in range(10):
        agg.add((f"b{i}", "pageview", MINUTE, None, None))
    assert agg.behind()
    await flushing
    assert not agg.behind()
    # With the store down, cells keep merging in memory up to the outage limit.
    agg.healthy = False
    flushing = asyncio.create_task(agg.flush())
    await asyncio.sleep(0)
    for i in range(50):
        agg.add((f"c{i}", "pageview", MINUTE, None, None))
    assert not agg.behind()
    for i in range(50):
        agg.add((f"d{i}", "pageview", MINUTE, None, None))
    assert agg.behind()
    await flushing


async def test_owner_rollup_counts_at_flush_and_reads_unflushed(store: Store) -> None:
    agg, stats = make(store)
    for i, n in enumerate((3, 4, 5)):
        for _ in range(n):
            agg.add((f"a/x{i}", "hit", MINUTE, None, None))
    agg.add(("b/y0", "hit", MINUTE, None, None))
    agg.add(("a", "hit", MINUTE, None, None))  # no `/`: not under `a/`
    wanted = [("a/*", "hit", ("2013", "09", "05")), ("b/*", "hit", ())]
    day = Period(2013, 9, 5)
    assert await stats.totals(wanted) == [12, 1]  # every cell still pending
    assert (await stats.period("a/*", "hit", day))["total"] == 12
    await agg.flush()
    assert not agg.pending
    assert await stats.totals(wanted) == [12, 1]
    assert (await stats.period("a/*", "hit", day))["data"]["14"] == 12
    assert (await stats.period("all", "hit", day))["total"] == 14
    # Counted, but neither listed nor ranked: it is no account of its own.
    assert "a%2F%2A" not in await store.members(stats.keys.accounts("hit"), "", "", 100)
    assert [r["account"] for r in await stats.top("hit", ("2013", "09", "05"), 10)] == [
        "a/x2",
        "a/x1",
        "a/x0",
        "a",
        "b/y0",
    ]


async def test_a_backlog_is_written_in_bounded_batches_and_waiters_wait_for_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tallyd.aggregator.MAX_FLUSH_CELLS", 10)
    agg, stats = make(store)
    agg.add_many([(f"a{i}", "pageview", MINUTE, None, None) for i in range(25)])
    waiting = asyncio.create_task(agg.flushed())
    await asyncio.sleep(0)
    assert await agg.flush() == 10  # one bounded batch; the rest stays pending
    assert len(agg.pending) == 15
    await asyncio.sleep(0)
    assert not waiting.done(), "its events are not all written yet"
    # Reads count every cell once while the backlog drains.
    assert (await stats.totals([("all", "pageview", ("2013",))]))[0] == 25
    await agg.flush()
    await agg.flush()
    await asyncio.wait_for(waiting, 1)
    assert not agg.pending
    assert (await stats.totals([("all", "pageview", ("2013",))]))[0] == 25


ACCOUNTS = st.sampled_from(["a", "b", "o/x", "o/y", "p/x", "all"])
EVENTS = st.sampled_from(["hit", "pageview"])
CELLS = st.tuples(ACCOUNTS, EVENTS, st.integers(0, 3), st.sampled_from([None, "paid"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(CELLS, st.integers(1, 5), st.booleans()), max_size=60))
def test_the_cell_index_finds_what_a_walk_of_every_cell_finds(
    steps: list[tuple[Cell, int, bool]],
) -> None:
    # Counts arrive as ingest adds them; a reader looks in at any moment.
    counts: dict[Cell, int] = {}
    index = CellIndex(counts)
    view = Unflushed(index, 2, CellIndex({}), 1)
    for cell, n, look in [*steps, (("a", "hit", 0, None), 1, True)]:
        counts[cell] = counts.get(cell, 0) + n
        if not look:
            continue
        for reader in ("a", "o/x", "o/*", "p/*", "all", "nobody", "q/*"):
            for event in ("hit", "pageview"):
                walked = {
                    c: k for c, k in counts.items() if c[1] == event and includes(reader, c[0])
                }
                found = [(c, k) for c, k, _ in view.select(reader, event)]
                assert dict(found) == walked and len(found) == len(walked), (reader, event)
        assert view.events(None) == {c[1] for c in counts}
        assert view.events("o/x") == {c[1] for c in counts if c[0] == "o/x"}


class ExpandsOnSecondTry(Expander):
    """An expander whose first build fails, as an unforeseen bug would."""

    failed = False

    def build(self, node: str, seq: int, cells: dict[Cell, int]) -> Any:
        if not self.failed:
            self.failed = True
            raise ValueError("an unforeseen bug")
        return super().build(node, seq, cells)


async def test_a_batch_that_cannot_be_expanded_is_kept_not_dropped(store: Store) -> None:
    keys, clock, retention = KeySpace(), Clock("UTC"), Retention(0, 0)
    agg = Aggregator(store, ExpandsOnSecondTry(keys, clock, retention), Metrics())
    stats = Stats(store, keys, clock, agg, retention=retention)
    agg.add(("acme", "pageview", MINUTE, None, None))
    with pytest.raises(ValueError):
        await agg.flush()
    assert not agg.healthy and "cannot expand" in agg.last_error
    agg.add(("acme", "pageview", MINUTE, None, None))  # counted meanwhile: the next batch
    assert await stats.period("acme", "pageview", Period(2013)) is not None
    await agg.flush()  # the kept batch, built again
    await agg.flush()  # then the one after it
    assert not agg.pending and await agg.drain(1) == 0
    answer = await stats.period("acme", "pageview", Period(2013))
    assert answer["total"] == 2


@pytest.mark.parametrize("source", ["events", "badge views"])
async def test_a_steady_stream_is_written_once_an_interval_and_its_end_at_once(
    store: Store, source: str
) -> None:
    # The flush loop writes early when input pauses; a stream that never pauses must
    # wait out the interval. Badge views once went uncounted as input, and a steady
    # stream of them was written batch after batch, as fast as the store took them.
    agg, stats = make(store, flush_interval=0.2)
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(agg.run())
    sent = 0
    until = loop.time() + 1.0
    while loop.time() < until:
        if source == "events":
            agg.add(("acme", "pageview", MINUTE, None, None))
        else:
            agg.count(("acme", "pageview", MINUTE, None))
        sent += 1
        await asyncio.sleep(0.002)
    during = agg.metrics.flushes
    # 1 s at one batch per 0.2 s, with slack for a slow machine (a stall of 20 ms is
    # a pause, and writes); flushing whenever the store was free wrote over a hundred.
    assert 2 <= during <= 12, during
    await asyncio.sleep(0.15)  # well inside the interval: the pause writes the rest
    assert not agg.pending and during <= agg.metrics.flushes <= during + 2
    answer = await stats.period("acme", "pageview", Period(2013))
    assert answer is not None and answer["total"] == sent
    agg.stop()
    await runner
