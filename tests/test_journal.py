"""The journal's files: written by the real writer thread, read back after damage.

The reader is held to one rule whatever the bytes: never a crash, and never a
count from a record that is not exactly as written (hypothesis generates the
journals and the damage: torn tails, flipped bytes, lost and reordered segments).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallyd.events import Cell
from tallyd.journal import (
    CUT,
    DATA,
    HEADER,
    Journal,
    Record,
    frame,
    pack_cut,
    pack_data,
    plan,
    read_node,
    read_records,
    segments,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
cells = st.dictionaries(
    st.tuples(names, names, st.integers(0, 2**40), st.none() | names),
    st.integers(1, 1000),
    min_size=1,
    max_size=6,
)
ids = st.lists(st.tuples(names, names), max_size=4)


@st.composite
def journals(draw: st.DrawFn) -> list[tuple[int, int, bytes]]:
    """(number, kind, payload) as a run writes them: data records, and now and then
    a cut taking every data record so far."""
    out: list[tuple[int, int, bytes]] = []
    seq = 0
    last_data = 0
    for number in range(1, draw(st.integers(1, 25)) + 1):
        if last_data and draw(st.integers(0, 3)) == 0:
            seq += 1
            out.append((number, CUT, pack_cut(seq, last_data)))
        else:
            out.append((number, DATA, pack_data(draw(cells), draw(ids))))
            last_data = number
    return out


def encode(records: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(frame(n, k, p) for n, k, p in records)


def as_records(records: list[tuple[int, int, bytes]]) -> list[Record]:
    return [Record(n, k, p) for n, k, p in records]


def total(cells_by_batch: list[tuple[int, dict[Cell, int]]]) -> dict[Cell, int]:
    out: dict[Cell, int] = {}
    for _, c in cells_by_batch:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


@given(st.binary(max_size=2000))
def test_any_bytes_never_crash_the_reader(data: bytes) -> None:
    records, _ = read_records(data)
    for r in records:
        assert r.kind in (DATA, CUT, 3)
    plan("n", records, [])


@given(journals())
def test_an_intact_journal_reads_back_exactly(written: list[tuple[int, int, bytes]]) -> None:
    records, problem = read_records(encode(written))
    assert problem is None
    assert [(r.number, r.kind, r.payload) for r in records] == written


@given(journals(), st.data())
def test_a_torn_tail_keeps_exactly_the_whole_records(
    written: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    blob = encode(written)
    cut_at = data.draw(st.integers(0, len(blob) - 1))
    records, problem = read_records(blob[:cut_at])
    whole = [w for w, end in zip(written, _ends(written), strict=True) if end <= cut_at]
    assert [(r.number, r.kind, r.payload) for r in records] == whole
    assert (problem is None) == (cut_at in (0, *_ends(written)))


@given(journals(), st.data())
def test_a_changed_byte_drops_its_record_and_never_counts_damage(
    written: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    blob = bytearray(encode(written))
    at = data.draw(st.integers(0, len(blob) - 1))
    blob[at] ^= data.draw(st.integers(1, 255))
    records, problem = read_records(bytes(blob))
    ends = _ends(written)
    hit = next(i for i, end in enumerate(ends) if at < end)
    got = [(r.number, r.kind, r.payload) for r in records]
    assert problem is not None
    # CRC-32 catches every change within 4 bytes: the record hit is never read,
    # every one before it is, and whatever is read is a record as written.
    assert written[hit] not in got
    assert got[:hit] == written[:hit]
    assert all(g in written for g in got)
    offset = at - (ends[hit - 1] if hit else 0)
    if offset not in (4, 5, 6, 7, 16):
        # Its length and kind intact, the reader steps over it to the next record.
        assert got == written[:hit] + written[hit + 1 :]


@given(journals(), st.randoms(use_true_random=False))
def test_record_order_does_not_change_the_batches(
    written: list[tuple[int, int, bytes]], rnd: random.Random
) -> None:
    shuffled = list(written)
    rnd.shuffle(shuffled)
    assert plan("n", as_records(shuffled), []).batches == plan("n", as_records(written), []).batches


@given(journals(), st.data())
def test_counts_come_only_from_records_that_were_written(
    written: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    """Lose any records (a lost segment, a torn one): the batches then hold a part
    of what was written, cell by cell never more, and every data record whole."""
    kept = [w for w in written if data.draw(st.booleans())]
    full = total(plan("n", as_records(written), []).batches)
    part = plan("n", as_records(kept), [])
    for cell, n in total(part.batches).items():
        assert n <= full[cell]
    expected: dict[Cell, int] = {}
    for _, kind, payload in kept:
        if kind == DATA:
            for a, e, m, b, n in msgpack.unpackb(payload)[0]:
                expected[(a, e, m, b)] = expected.get((a, e, m, b), 0) + n
    assert total(part.batches) == expected


def test_data_past_the_last_cut_is_the_next_batch() -> None:
    written = [
        (1, DATA, pack_data({("a", "e", 1, None): 2}, [])),
        (2, CUT, pack_cut(7, 1)),
        (3, DATA, pack_data({("a", "e", 1, None): 5}, [("a", "x")])),
    ]
    replay = plan("n", as_records(written), [])
    assert replay.batches == [(7, {("a", "e", 1, None): 2}), (8, {("a", "e", 1, None): 5})]
    assert replay.ids == [("a", "x")]
    assert replay.events == 7


def test_a_payload_that_is_not_a_record_is_damage_not_a_count() -> None:
    written = [
        (1, DATA, msgpack.packb([["a", "e", 1, None, 3]])),  # the wrong shape
        (2, DATA, msgpack.packb(([["a", "e", "1", None, 3]], []))),  # a minute as text
        (3, DATA, msgpack.packb(([["a", "e", 1, None, -3]], []))),  # a negative count
        (4, DATA, pack_data({("a", "e", 1, None): 1}, [])),
    ]
    damage: list[str] = []
    replay = plan("n", as_records(written), damage)
    assert replay.batches == [(1, {("a", "e", 1, None): 1})]
    assert len(damage) == 3


def _ends(written: list[tuple[int, int, bytes]]) -> list[int]:
    ends, pos = [], 0
    for n, k, p in written:
        pos += len(frame(n, k, p))
        ends.append(pos)
    return ends


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(cells, min_size=1, max_size=30), st.data())
def test_the_writer_thread_round_trip(
    tmp_path: Path, batches: list[dict[Cell, int]], data: st.DataObject
) -> None:
    """What the writer thread puts in its files is what was appended, cut where cut."""
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    synced: list[int] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_synced(n: int) -> None:
            synced.append(n)
            if n == last:
                done.set()

        journal = Journal(directory, "0123456789abcdef", loop, on_synced, 600.0)
        last = 0
        seq = 0
        for cells_ in batches:
            last = journal.append_data(cells_, [])
            if data.draw(st.booleans()):
                seq += 1
                last = journal.append_cut(seq, last)
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.to_thread(journal.close, False)

    asyncio.run(run())
    assert synced == sorted(synced)
    [(node, paths)] = segments(directory).items()
    replay = read_node(node, paths)
    assert not replay.damage
    assert total(replay.batches) == total([(0, c) for c in batches])


def test_ids_reach_the_id_file_only_once_their_records_are_in_the_store(tmp_path: Path) -> None:
    """An id file never names an event a damaged journal could lose: re-sending
    such an event must count it."""
    from tallyd.journal import recent_ids

    async def run() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        loop = asyncio.get_running_loop()
        synced = asyncio.Event()
        journal = Journal(tmp_path, "0123456789abcdef", loop, lambda n: synced.set(), 600.0)
        first = journal.append_data({("a", "e", 1, None): 1}, [("a", "id-1")])
        journal.append_data({("a", "e", 1, None): 1}, [("a", "id-2")])
        await asyncio.wait_for(synced.wait(), 5)
        before = list(recent_ids(tmp_path, 0))
        journal.release(first)
        await asyncio.to_thread(journal.close, False)
        return before, list(recent_ids(tmp_path, 0))

    before, after = asyncio.run(run())
    assert before == []
    assert after == [("a", "id-1")]
    # The record not in the store stays in the journal, its id with it.
    [(node, paths)] = segments(tmp_path).items()
    assert read_node(node, paths).ids == [("a", "id-1"), ("a", "id-2")]


def test_files_that_are_not_ours_are_left_alone(tmp_path: Path) -> None:
    from tallyd.journal import recent_ids

    for name in ("zz.00000002.wal", "ids.notanumber.log", "ids.123.x.log", "notes.txt"):
        (tmp_path / name).write_bytes(b"junk")
    (tmp_path / "0123456789abcdef.00000001.wal").mkdir()
    assert segments(tmp_path) == {}
    assert list(recent_ids(tmp_path, 10**12)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0123456789abcdef.00000001.wal",
        "ids.123.x.log",
        "ids.notanumber.log",
        "notes.txt",
        "zz.00000002.wal",
    ]


def test_a_damaged_copy_of_a_cut_changes_nothing() -> None:
    """Cuts are written twice: one copy failing its checksum leaves every record in
    its batch (a lost cut would put them in the next one, or number them anew)."""
    cut = frame(2, CUT, pack_cut(1, 1))
    blob = (
        frame(1, DATA, pack_data({("a", "e", 1, None): 2}, [("a", "x")]))
        + cut
        + cut
        + frame(3, DATA, pack_data({("a", "e", 1, None): 5}, []))
    )
    whole = plan("n", read_records(blob)[0], []).batches
    at = len(blob) - len(cut) * 2 - len(frame(3, DATA, pack_data({("a", "e", 1, None): 5}, [])))
    for copy in (0, 1):
        damaged = bytearray(blob)
        damaged[at + copy * len(cut) + HEADER.size] ^= 0xFF
        records, problem = read_records(bytes(damaged))
        assert problem is not None
        assert (
            plan("n", records, []).batches
            == whole
            == [
                (1, {("a", "e", 1, None): 2}),
                (2, {("a", "e", 1, None): 5}),
            ]
        )


def test_a_missing_cut_is_said() -> None:
    records = [
        Record(1, DATA, pack_data({("a", "e", 1, None): 1}, [])),
        Record(2, CUT, pack_cut(1, 1)),
        Record(3, DATA, pack_data({("a", "e", 1, None): 1}, [])),
        Record(5, DATA, pack_data({("a", "e", 1, None): 1}, [])),
        Record(6, CUT, pack_cut(3, 5)),
    ]
    damage: list[str] = []
    plan("n", records, damage)
    assert any("cut(s) [2] unreadable" in d for d in damage)
