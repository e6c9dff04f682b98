"""The one store contract, run against every backend (the `store` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import pytest

from tallyd.stores import Batch, Store, open_store

pytestmark = pytest.mark.timeout(60)


def batch(seq: int, node: str = "n1", n: int = 1) -> Batch:
    return Batch(
        node,
        seq,
        counters={"acme/pageview/2013": {"09": n, "10": 2 * n}, "acme/pageview": {"2013": 3 * n}},
        indexes={"accounts:pageview": {"acme", "ben%2Fbash"}, "events": {"pageview"}},
        rankings={"top:pageview/2013/09": {"acme": 5 * n, "ben%2Fbash": 2 * n}},
        expire_at={"acme/pageview/2013": 2_000_000_000},
        cells=1,
    )


async def test_apply_and_read(store: Store) -> None:
    assert await store.apply(batch(1))
    snap = await store.read(["acme/pageview/2013", "missing", "acme/pageview"], "n1")
    assert snap.hashes == [{"09": 1, "10": 2}, {}, {"2013": 3}]
    # The batch marker as seen with each key it wrote (a missing key may say 0).
    assert snap.applied[0] == snap.applied[2] == 1


async def test_increments_add_up(store: Store) -> None:
    await store.apply(batch(1))
    await store.apply(batch(2, n=10))
    snap = await store.read(["acme/pageview/2013"], "n1")
    assert snap.hashes == [{"09": 11, "10": 22}]
    assert await store.top("top:pageview/2013/09", 10) == [("acme", 55), ("ben%2Fbash", 22)]


async def test_reapplying_a_batch_is_a_no_op(store: Store) -> None:
    assert await store.apply(batch(1))
    assert not await store.apply(batch(1))
    assert not await store.apply(batch(1, n=100))
    snap = await store.read(["acme/pageview/2013"], "n1")
    assert snap.hashes == [{"09": 1, "10": 2}]


async def test_batches_are_per_node(store: Store) -> None:
    assert await store.apply(batch(5, node="a"))
    assert await store.apply(batch(1, node="b"))
    assert not await store.apply(batch(4, node="a"))
    key = ["acme/pageview/2013"]
    assert (await store.read(key, "a")).applied == [5]
    assert (await store.read(key, "b")).applied == [1]
    assert (await store.read(key, "c")).applied == [0]


async def test_members_pages_in_order_with_prefix(store: Store) -> None:
    names = [f"acct{i:03d}" for i in range(25)] + ["other", "ben%2Fbash"]
    await store.apply(Batch("n", 1, indexes={"accounts:x": set(names)}))
    page1 = await store.members("accounts:x", "acct", "", 10)
    assert page1 == [f"acct{i:03d}" for i in range(10)]
    page3 = await store.members("accounts:x", "acct", "acct019", 10)
    assert page3 == [f"acct{i:03d}" for i in range(20, 25)]
    assert await store.members("accounts:x", "", "", 100) == sorted(names)
    assert await store.members("accounts:x", "zz", "", 10) == []


async def test_top_orders_by_score_then_name(store: Store) -> None:
    await store.apply(Batch("n", 1, rankings={"top:e/2013/09": {"b": 3, "a": 3, "c": 9, "d": 1}}))
    assert await store.top("top:e/2013/09", 3) == [("c", 9), ("a", 3), ("b", 3)]
    assert await store.top("top:none", 3) == []


async def test_expired_keys_are_gone_after_prune(store: Store) -> None:
    now = int(time.time())
    await store.apply(
        Batch(
            "n",
            1,
            counters={"old/x/1": {"1": 1}, "new/x/1": {"1": 1}},
            expire_at={"old/x/1": now - 10, "new/x/1": now + 3600},
        )
    )
    # SQLite deletes in prune(); Redis has expired the key by itself.
    await store.prune(now)
    snap = await store.read(["old/x/1", "new/x/1"], "n")
    assert snap.hashes == [{}, {"1": 1}]


async def test_concurrent_applies_from_several_nodes(store: Store) -> None:
    # A node has one batch in flight at a time; different nodes write concurrently.
    async def node(name: str) -> None:
        for seq in range(1, 6):
            assert await store.apply(batch(seq, node=name))

    await asyncio.gather(*(node(f"n{k}") for k in range(4)))
    snap = await store.read(["acme/pageview/2013"], "n0")
    assert snap.hashes == [{"09": 20, "10": 40}]
    assert snap.applied_seq == 5


def test_unknown_scheme_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="unknown scheme; accepted: sqlite:///RELATIVE") as err:
        open_store("postgres://x")
    assert "redis://[:PASSWORD@]HOST:PORT[/DB]" in str(err.value)
    assert "redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]" in str(err.value)


async def test_unreachable_store_is_a_store_error() -> None:
    from tallyd.stores import StoreError

    s = open_store("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        await s.open()
    await s.close()


async def test_distinct_visitors_estimate(store: Store) -> None:
    key = f"unique:acme/hit/2013/09/{uuid.uuid4().hex[:6]}"
    visitors = [hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in range(10_000)]
    assert await store.unique(key) == 0
    await store.apply(
        Batch("u1", 1, uniques={key: visitors[:6000]}, expire_at={key: 2_000_000_000})
    )
    # Visitors seen again, in a later batch, count once; so does a replayed batch.
    await store.apply(Batch("u1", 2, uniques={key: visitors[4000:]}))
    await store.apply(Batch("u1", 2, uniques={key: visitors[4000:]}))
    estimate = await store.unique(key)
    # 2^14 registers: a standard error of 0.81%; 3% is beyond 3.5 sigma.
    assert abs(estimate - 10_000) <= 300, estimate
    small = f"unique:acme/hit/2013/10/{uuid.uuid4().hex[:6]}"
    await store.apply(Batch("u1", 3, uniques={small: visitors[:5] + visitors[:5]}))
    assert await store.unique(small) == 5
