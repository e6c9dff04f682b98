"""SQLite reads run in reader threads, each with its own connection, under a time limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tallyd.stores import Batch, StoreError
from tallyd.stores.sqlite import READERS, SQLiteStore

pytestmark = pytest.mark.timeout(60)

ACCOUNTS = 200


def counters(n: int) -> dict[str, dict[str, int]]:
    return {f"acct{i}/pageview/2013": {"09": i * n, "10": n} for i in range(ACCOUNTS)}


async def opened(path: Path, read_timeout: float = 1.0) -> SQLiteStore:
    store = SQLiteStore(f"sqlite:///{path}", read_timeout=read_timeout)
    await store.open()
    await store.apply(
        Batch(
            "n",
            1,
            counters=counters(1),
            indexes={"accounts:pageview": {f"acct{i}" for i in range(ACCOUNTS)}},
            rankings={"top:pageview/2013/09": {"acct1": 5, "acct2": 7}},
            uniques={"u:acct1/2013/09/05": [f"{i:016x}" for i in range(50)]},
        )
    )
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await opened(tmp_path / "t.db")
    yield s
    await s.close()


def open_descriptors(path: Path) -> int:
    """This process's descriptors on the database file and its WAL."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") in names
    return n


def readers_running() -> int:
    # Counted before and after: a store other tests left open may have readers too.
    return sum(t.name.startswith("tallyd-sqlite-read") for t in threading.enumerate())


async def test_reads_are_answered_while_a_writer_holds_its_transaction(
    store: SQLiteStore, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE counters SET value = value + 1000")
    # The store's own writer now waits for the lock (busy_timeout): its thread is taken.
    applying = asyncio.ensure_future(store.apply(Batch("n", 2, counters=counters(1))))
    await asyncio.sleep(0.2)
    assert not applying.done()
    t0 = time.monotonic()
    snap = await store.read(["acct3/pageview/2013"], "n")
    assert snap.hashes == [{"09": 3, "10": 1}] and snap.applied_seq == 1
    assert await store.members("accounts:pageview", "acct1", "", 3) == [
        "acct1",
        "acct10",
        "acct100",
    ]
    assert await store.top("top:pageview/2013/09", 1) == [("acct2", 7)]
    assert 40 <= await store.unique("u:acct1/2013/09/05") <= 60
    await store.ping()
    assert time.monotonic() - t0 < 0.5
    other.execute("COMMIT")
    other.close()
    assert await applying
    snap = await store.read(["acct3/pageview/2013"], "n")
    assert snap.hashes == [{"09": 1006, "10": 1002}] and snap.applied_seq == 2


async def test_a_slow_read_is_cut_at_the_limit_while_others_are_answered(
    tmp_path: Path,
) -> None:
    store = await opened(tmp_path / "t.db", read_timeout=0.3)
    # Every key distinct and missing: a million index look-ups, over a second of work.
    # (Encoding the keys holds the GIL, so a small read waits that long: 3 million
    # keys took 0.42 s to encode once in a busy suite, past the 0.2 s asserted below.)
    huge = [f"missing/{i}" for i in range(1_000_000)]
    answered: list[float] = []

    async def small_reads() -> None:
        while True:
            t0 = time.monotonic()
            snap = await store.read(["acct7/pageview/2013"], "n")
            answered.append(time.monotonic() - t0)
            assert snap.hashes == [{"09": 7, "10": 1}]
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(small_reads())
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"a read took over 0\.3 s and was stopped"):
        await store.read(huge, "n")
    took = time.monotonic() - t0
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    assert 0.3 <= took < 1.5, took
    # Reads kept being answered on the other reader while the slow one ran.
    assert len(answered) >= 10 and max(answered) < 0.2, answered
    # The reader that was cut is whole again.
    for _ in range(2 * READERS):
        assert (await store.read(["acct7/pageview/2013"], "n")).hashes == [{"09": 7, "10": 1}]
    await store.close()


async def test_many_concurrent_reads_get_their_own_answers(store: SQLiteStore) -> None:
    keys = [f"acct{i}/pageview/2013" for i in range(ACCOUNTS)]
    reads = [store.read([k, "missing"], "n") for k in keys]
    uniques = [store.unique("u:acct1/2013/09/05") for _ in range(50)]
    pages = [store.members("accounts:pageview", f"acct{i}", "", 1) for i in range(1, 10)]
    snaps, counts, firsts = await asyncio.gather(
        asyncio.gather(*reads), asyncio.gather(*uniques), asyncio.gather(*pages)
    )
    assert [s.hashes for s in snaps] == [[{"09": i, "10": 1}, {}] for i in range(ACCOUNTS)]
    assert len(set(counts)) == 1
    assert firsts == [[f"acct{i}"] for i in range(1, 10)]


async def test_close_stops_the_readers_and_closes_their_connections(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    readers = readers_running()
    store = await opened(path)
    # Enough reads at once that every reader thread opens its connection.
    await asyncio.gather(*(store.read([f"acct{i}/pageview/2013"], "n") for i in range(100)))
    assert open_descriptors(path) > 0
    assert readers_running() == readers + READERS
    await store.close()
    assert open_descriptors(path) == 0
    assert readers_running() == readers
    # The last connection closed checkpoints and removes the WAL.
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(StoreError, match="not open"):
        await store.read(["acct1/pageview/2013"], "n")


async def test_a_read_waiting_past_its_limit_is_not_started(tmp_path: Path) -> None:
    store = await opened(tmp_path / "t.db", read_timeout=0.0)
    with pytest.raises(StoreError, match="waited over 0 s for a reader"):
        await store.read(["acct1/pageview/2013"], "n")
    await store.close()
