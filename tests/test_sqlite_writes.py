"""SQLite writes a batch as JSON documents of bounded size, so its writer thread never
holds the GIL long: cut anywhere, every row still lands once."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyd.stores import Batch
from tallyd.stores.sqlite import DOCUMENT_KEYS, DOCUMENT_ROWS, SQLiteStore, _encode

names = st.text("abc/:-é", min_size=1, max_size=6)
counts = st.integers(0, 2**53 - 1)


def merged(docs: list[bytes]) -> dict[str, object]:
    """The documents put back together, failing on a row that is in two of them."""
    out: dict[str, object] = {}
    for doc in docs:
        for key, rows in orjson.loads(doc).items():
            if isinstance(rows, dict):
                held = out.setdefault(key, {})
                assert isinstance(held, dict) and not held.keys() & rows.keys()
                held.update(rows)
            elif isinstance(rows, list):
                members = out.setdefault(key, [])
                assert isinstance(members, list) and not set(members) & set(rows)
                members.extend(rows)
            else:
                assert key not in out
                out[key] = rows
    return out


def rows_in(doc: bytes) -> int:
    return sum(len(v) if isinstance(v, (dict, list)) else 1 for v in orjson.loads(doc).values())


@settings(max_examples=60, deadline=None)
@given(
    counters=st.dictionaries(names, st.dictionaries(st.sampled_from(["01", "59"]), counts)),
    members=st.integers(0, 2 * DOCUMENT_ROWS + 5),
    keys=st.integers(0, 2 * DOCUMENT_KEYS + 5),
)
def test_documents_hold_every_row_once_and_stay_small(
    counters: dict[str, dict[str, int]], members: int, keys: int
) -> None:
    counters = {**counters, **{f"k{i}": {"2013": i} for i in range(keys)}}
    indexes = {"accounts:e": {f"a{i}" for i in range(members)}, "events": {"e"}}
    rankings = {"top:e/2013": {f"a{i}": i for i in range(members)}, "top:f/2013": {"x": 1}}
    expire_at = {f"k{i}": i for i in range(keys)}
    docs = _encode(counters, indexes, rankings, expire_at)
    assert merged(docs[0]) == counters
    assert {k: set(v) for k, v in merged(docs[1]).items()} == indexes  # type: ignore[call-overload]
    assert merged(docs[2]) == rankings
    assert merged(docs[3]) == expire_at
    for doc in docs[0] + docs[3]:
        assert len(orjson.loads(doc)) <= DOCUMENT_KEYS
    for doc in docs[1] + docs[2]:
        assert rows_in(doc) <= DOCUMENT_ROWS


async def test_a_batch_larger_than_a_document_is_written_whole(tmp_path: Path) -> None:
    n = 2 * DOCUMENT_ROWS + 7  # a ranking and an index cut in three, counters in many
    store = SQLiteStore(f"sqlite:///{tmp_path}/w.db")
    await store.open()
    try:
        for seq in (1, 2):  # the second adds to what the first wrote
            await store.apply(
                Batch(
                    "n",
                    seq,
                    counters={f"a{i}/signup/2013": {"09": i} for i in range(n)},
                    indexes={"accounts:signup": {f"a{i}" for i in range(n)}},
                    rankings={"top:signup/2013/09": {f"a{i}": i for i in range(n)}},
                    expire_at={f"a{i}/signup/2013": 1_900_000_000 for i in range(n)},
                )
            )
        keys = [f"a{i}/signup/2013" for i in range(n)]
        snap = await store.read(keys, "n")
        assert snap.hashes == [{"09": 2 * i} for i in range(n)]
        assert len(await store.members("accounts:signup", "", "", n + 1)) == n
        top = await store.top("top:signup/2013/09", n + 1)
        assert sorted(top) == sorted((f"a{i}", 2 * i) for i in range(n))
    finally:
        await store.close()
