"""The write-ahead journal behind `--durable` (SPEC §8; design in docs/operations.md).

What is journaled is counted cells, not raw events: a record holds the cells
(account, event, minute, breakdown value → count) that ingest added in one pass
of the event loop, so a record is as small as its distinct cells. Records are
numbered; the aggregator merges a record into its pending cells only once the
record is on disk, so everything a reader or a client can see is durable.

When the aggregator takes its pending cells for batch `seq`, it appends a cut,
(seq, upto): the batch holds exactly the data records numbered up to `upto` and
past the previous cut's. The cut is on disk before the batch goes to the store,
and the store applies each (node, seq) at most once; so after a crash, rebuilding
every batch the journal describes and applying it again is idempotent, and the
data records past the last cut make one more batch.

On disk: segment files `<node>.<index>.wal` of records framed as
`crc32 | length | number | kind | payload`, the checksum covering everything
after itself. A record that ends early or fails its checksum ends the segment's
good part: a crash mid-write tears at most the last group, which was never
acknowledged, and nothing after damage is trusted. Each segment starts by
repeating the last cut, and segments are deleted oldest first once every data
record in them is in the store, so a journal read back always starts at a cut.

Event ids (for de-duplication across restarts) go to `ids.<start>.<node>.log`
files in the same framing, one file per de-duplication window.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from tallyd.events import Cell

log = logging.getLogger("tallyd.journal")

HEADER = struct.Struct("<IIQB")  # crc32, payload length, record number, kind
DATA = 1
CUT = 2
IDS = 3
KINDS = (DATA, CUT, IDS)
# A record longer than this is damage, not data (a batch of cells is far smaller).
MAX_RECORD = 256 * 1024 * 1024
# Segments roll over past this size; applied ones are deleted whole.
SEGMENT_BYTES = 16 * 1024 * 1024
SUFFIX = ".wal"
IDS_PREFIX = "ids."


def frame(number: int, kind: int, payload: bytes) -> bytes:
    head = HEADER.pack(0, len(payload), number, kind)[4:]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return struct.pack("<I", crc) + head + payload


@dataclass
class Record:
    number: int
    kind: int
    payload: bytes


def read_records(data: bytes) -> tuple[list[Record], str | None]:
    """The records of a segment's bytes that are whole and pass their checksum,
    and what was wrong with the rest (None: nothing).

    A record failing its checksum under a sound header (its length fits, its kind
    is known) is skipped alone: the next one starts where its length says. A
    header that is not sound, or a record running past the end (a torn write),
    ends the good part: nothing after it can be framed with confidence.
    """
    records: list[Record] = []
    problems: list[str] = []
    pos, end = 0, len(data)
    size = HEADER.size
    while pos < end:
        if end - pos < size:
            problems.append(f"a torn record header at byte {pos} ({end - pos} bytes dropped)")
            break
        crc, length, number, kind = HEADER.unpack_from(data, pos)
        if length > MAX_RECORD or kind not in KINDS:
            problems.append(f"a damaged record header at byte {pos} ({end - pos} bytes dropped)")
            break
        if pos + size + length > end:
            problems.append(
                f"a torn record at byte {pos} ({end - pos} of {size + length} bytes; dropped)"
            )
            break
        body_at = pos + size
        if zlib.crc32(data[body_at : body_at + length], zlib.crc32(data[pos + 4 : body_at])) != crc:
            problems.append(f"a record failing its checksum at byte {pos} (dropped)")
        else:
            records.append(Record(number, kind, data[body_at : body_at + length]))
        pos = body_at + length
    return records, "; ".join(problems) or None


def pack_data(cells: dict[Cell, int], ids: list[tuple[str, str]]) -> bytes:
    # The ids of the events counted go in the same record as their cells: on disk
    # together or not at all, so a re-sent event is never counted twice.
    return msgpack.packb(([(*cell, n) for cell, n in cells.items()], ids))  # type: ignore[no-any-return]


def unpack_data(payload: bytes, into: dict[Cell, int]) -> list[tuple[str, str]]:
    """Add a data record's cells to `into` and return its ids; ValueError if it is
    not a data record (then `into` may hold part of it: use a scratch dict)."""
    record = msgpack.unpackb(payload, use_list=False)
    if type(record) is not tuple or len(record) != 2:
        raise ValueError("not a data record")
    rows, ids = record
    if type(rows) is not tuple:
        raise ValueError("not a list of cells")
    for row in rows:
        if type(row) is not tuple or len(row) != 5:
            raise ValueError("not a cell")
        account, event, minute, bval, n = row
        if not (
            type(account) is str
            and type(event) is str
            and type(minute) is int
            and (bval is None or type(bval) is str)
            and type(n) is int
            and n > 0
        ):
            raise ValueError("not a cell")
        cell = (account, event, minute, bval)
        into[cell] = into.get(cell, 0) + n
    return check_ids(ids)


def pack_cut(seq: int, upto: int) -> bytes:
    return msgpack.packb((seq, upto))  # type: ignore[no-any-return]


def unpack_cut(payload: bytes) -> tuple[int, int]:
    cut = msgpack.unpackb(payload, use_list=False)
    if type(cut) is not tuple or len(cut) != 2 or not all(type(x) is int and x >= 0 for x in cut):
        raise ValueError("not a cut")
    return cut[0], cut[1]


def unpack_ids(payload: bytes) -> list[tuple[str, str]]:
    return check_ids(msgpack.unpackb(payload, use_list=False))


def check_ids(ids: Any) -> list[tuple[str, str]]:
    if type(ids) is not tuple or not all(
        type(i) is tuple and len(i) == 2 and type(i[0]) is str and type(i[1]) is str for i in ids
    ):
        raise ValueError("not a list of ids")
    return list(ids)


@dataclass
class Replay:
    """What one node's journal says is owed to the store."""

    node: str
    # (seq, cells) in seq order; the last may be the records past the last cut.
    batches: list[tuple[int, dict[Cell, int]]] = field(default_factory=list)
    events: int = 0
    # (account, id) of the events in the records: remembered for de-duplication.
    ids: list[tuple[str, str]] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)


def plan(node: str, records: list[Record], damage: list[str]) -> Replay:
    """Turn a node's records (any order) into the batches they make.

    A data record belongs to the first cut whose `upto` reaches its number;
    those past every cut make one more batch. A record that does not decode
    is left out like damage: never a count from it.
    """
    cuts: dict[int, int] = {}
    data: list[tuple[int, bytes]] = []
    for r in records:
        if r.kind == CUT:
            try:
                seq, upto = unpack_cut(r.payload)
            except ValueError:
                damage.append(f"record {r.number}: an unreadable cut")
                continue
            cuts[seq] = upto
        elif r.kind == DATA:
            data.append((r.number, r.payload))
    replay = Replay(node, damage=damage)
    order = sorted(cuts.items())
    seqs = [seq for seq, _ in order if seq]
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []
    if missing:
        # Both copies of a cut lost: the records of the batches around it cannot be
        # told apart, and are counted with the next cut's, which may count twice.
        damage.append(f"cut(s) {missing[:5]} unreadable: the batches around them may be wrong")
    bounds = [upto for _, upto in order]
    groups: list[dict[Cell, int]] = [{} for _ in range(len(order) + 1)]
    seen: set[int] = set()
    for number, payload in sorted(data, key=lambda d: d[0]):
        if number in seen:
            continue  # the same record twice (a copied segment): count it once
        seen.add(number)
        i = next((j for j, upto in enumerate(bounds) if number <= upto), len(bounds))
        cells: dict[Cell, int] = {}
        try:
            replay.ids.extend(unpack_data(payload, cells))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            damage.append(f"record {number}: unreadable ({exc})")
            continue
        group = groups[i]
        for cell, n in cells.items():
            group[cell] = group.get(cell, 0) + n
    for (seq, _), cells in zip(order, groups, strict=False):
        if cells:  # a cut with nothing (a segment's opening one, say) writes nothing
            replay.batches.append((seq, cells))
    if groups[-1]:
        replay.batches.append(((order[-1][0] if order else 0) + 1, groups[-1]))
    replay.events = sum(sum(c.values()) for _, c in replay.batches)
    return replay


# `<node>.<index>.wal`: tallyd's node ids are 16 hex digits. Other files are not
# ours: left alone, never read or deleted.
SEGMENT_NAME = re.compile(r"([0-9a-f]{16})\.(\d{8})\.wal")
IDS_NAME = re.compile(r"ids\.(\d+)\.([0-9a-f]{16})(?:-replayed)?\.log")


def segments(directory: Path) -> dict[str, list[Path]]:
    """Segment files by node, oldest first."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in directory.iterdir():
        m = SEGMENT_NAME.fullmatch(p.name)
        if m and p.is_file():
            found.setdefault(m[1], []).append((int(m[2]), p))
    return {n: [p for _, p in sorted(ps)] for n, ps in found.items()}


def read_node(node: str, paths: list[Path]) -> Replay:
    records: list[Record] = []
    damage: list[str] = []
    for p in paths:
        got, problem = read_records(p.read_bytes())
        records.extend(got)
        if problem:
            damage.append(f"{p.name}: {problem}")
    return plan(node, records, damage)


def recent_ids(directory: Path, since: float) -> Iterator[tuple[str, str]]:
    """Ids from id files started since `since`; older ones of ours are deleted."""
    forget_ids(directory, since)
    for p in sorted(directory.iterdir()):
        if not IDS_NAME.fullmatch(p.name) or not p.is_file():
            continue
        records, problem = read_records(p.read_bytes())
        if problem:
            log.warning("journal: %s: %s; ids after it are forgotten", p.name, problem)
        for r in records:
            try:
                yield from unpack_ids(r.payload)
            except (ValueError, TypeError, msgpack.UnpackException):
                log.warning("journal: %s: record %d is not a list of ids", p.name, r.number)


def keep_ids(directory: Path, node: str, ids: list[tuple[str, str]]) -> None:
    """Write ids to an id file of their own, on disk before this returns.

    Replay reads the ids of a dead run's records from its segments; they are
    written here before those segments are deleted, or a second crash soon
    after would forget them (the run may have died before its id file had them).
    """
    if not ids:
        return
    with open(ids_path(directory, node, time.time()), "ab") as fh:
        append_ids(fh, ids)
    sync_dir(directory)


def ids_path(directory: Path, node: str, started: float) -> Path:
    return directory / f"{IDS_PREFIX}{int(started)}.{node}.log"


def append_ids(fh: Any, ids: list[tuple[str, str]]) -> None:
    """One record of ids at the end of an id file, on disk before this returns."""
    fh.write(frame(0, IDS, msgpack.packb(ids)))
    fh.flush()
    os.fdatasync(fh.fileno())


def forget_ids(directory: Path, before: float) -> None:
    """Delete tallyd's id files started before `before` (others are left alone)."""
    for p in directory.iterdir():
        m = IDS_NAME.fullmatch(p.name)
        if m and p.is_file() and int(m[1]) < before:
            p.unlink(missing_ok=True)


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Lock:
    """One tallyd per journal directory: another would replay a live journal."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise OSError(f"{directory} is in use by another tallyd") from None

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class Journal:
    """Appends records from the event loop; a writer thread commits them in groups.

    `append` costs the loop a list append. The writer takes everything appended
    since its last turn, writes it, calls fdatasync once for the group, and tells
    the loop which number is now on disk (`on_synced`). Packing the cells to bytes
    happens on the writer thread, so a record's cells must not change once appended.

    Event ids reach the id files only once their records are in the store
    (`release`): an id file never names an event that a damaged journal could have
    lost, so re-sending such an event counts it, once.
    """

    def __init__(
        self,
        directory: Path,
        node: str,
        loop: asyncio.AbstractEventLoop,
        on_synced: Any,
        ids_every: float,
    ) -> None:
        self.directory = directory
        self.node = node
        self._loop = loop
        self._on_synced = on_synced
        self._ids_every = ids_every
        self._number = 0
        self._queue: list[tuple[int, int, Any]] = []
        self._release = 0
        self._cond = threading.Condition()
        self._closing = False
        # Set (by the writer) once a write failed; nothing is written after it.
        self.error: BaseException | None = None
        # Writer-thread state.
        self._last_cut = (0, 0)
        self._index = 0
        self._seg: Any = None
        self._seg_size = 0
        self._seg_max: list[tuple[Path, int]] = []  # (segment, highest data number in it)
        self._unreleased_ids: deque[tuple[int, list[tuple[str, str]]]] = deque()
        self._ids_file: Any = None
        self._ids_started = 0.0
        self.synced_bytes = 0
        self.groups = 0
        self._thread = threading.Thread(target=self._writer, name="tallyd-journal", daemon=True)
        self._thread.start()

    # -- the loop's side -----------------------------------------------------

    def append_data(self, cells: dict[Cell, int], ids: list[tuple[str, str]]) -> int:
        return self._append(DATA, (cells, ids))

    def append_cut(self, seq: int, upto: int) -> int:
        return self._append(CUT, (seq, upto))

    def _append(self, kind: int, body: Any) -> int:
        self._number += 1
        with self._cond:
            self._queue.append((self._number, kind, body))
            self._cond.notify()
        return self._number

    def release(self, upto: int) -> None:
        """Every data record numbered up to `upto` is in the store."""
        with self._cond:
            self._release = max(self._release, upto)
            self._cond.notify()

    def close(self, applied_all: bool) -> None:
        """Write what is queued and stop; with `applied_all`, delete every segment."""
        with self._cond:
            if applied_all:
                self._release = self._number
            self._closing = True
            self._cond.notify()
        self._thread.join()

    # -- the writer thread ---------------------------------------------------

    def _writer(self) -> None:
        released = 0
        while True:
            with self._cond:
                while not (self._queue or self._closing or self._release > released):
                    self._cond.wait()
                queue, self._queue = self._queue, []
                release, closing = self._release, self._closing
            try:
                if queue:
                    self._write(queue)
                if release > released or closing:
                    self._keep_released_ids(release)
                    self._delete_applied(release, closing)
                    released = release
            except BaseException as exc:  # a full disk, a removed directory: tell the loop
                log.error("journal: cannot write: %s", exc)
                self.error = exc
                self._tell(-1)
                return
            if closing:
                with self._cond:
                    if not self._queue:
                        if self._ids_file is not None:
                            self._ids_file.close()
                        if self._seg is not None:
                            self._seg.close()
                        return

    def _write(self, queue: list[tuple[int, int, Any]]) -> None:
        out = []
        top_data = 0
        for number, kind, body in queue:
            if kind == DATA:
                cells, ids = body
                out.append(frame(number, DATA, pack_data(cells, ids)))
                top_data = number
                if ids:
                    self._unreleased_ids.append((number, ids))
            else:
                self._last_cut = body
                # Twice: a cut places every record before it, and one damaged
                # copy must not leave a batch's records to be guessed at.
                cut = frame(number, CUT, pack_cut(*body))
                out += (cut, cut)
        if self._seg is None or self._seg_size >= SEGMENT_BYTES:
            self._roll()
        self._check_segment()
        blob = b"".join(out)
        self._seg.write(blob)
        self._seg.flush()
        os.fdatasync(self._seg.fileno())
        self._seg_size += len(blob)
        self.synced_bytes += len(blob)
        self.groups += 1
        if top_data:
            path, _ = self._seg_max[-1]
            self._seg_max[-1] = (path, top_data)
        self._tell(queue[-1][0])

    def _tell(self, number: int) -> None:
        """Hand the loop the number now on disk (-1: the journal failed)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            self._loop.call_soon_threadsafe(self._on_synced, number)

    def _check_segment(self) -> None:
        """Raise unless the open segment is still the file at its path: writes to a
        file deleted (or a directory moved) under tallyd would be acknowledged and
        then found by no start."""
        path = self._seg_max[-1][0]
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            raise OSError(f"the journal file {path.name} was deleted") from None
        mine = os.fstat(self._seg.fileno())
        if (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
            raise OSError(f"the journal file {path.name} was replaced")

    def _roll(self) -> None:
        if self._seg is not None:
            self._seg.close()
        self._index += 1
        path = self.directory / f"{self.node}.{self._index:08d}{SUFFIX}"
        self._seg = open(path, "ab")  # noqa: SIM115 — kept open across groups
        # Repeat the last cut, so this segment read alone knows where it starts.
        seq, upto = self._last_cut
        head = frame(0, CUT, pack_cut(seq, upto))
        self._seg.write(head)
        self._seg_size = len(head)
        self._seg_max.append((path, 0))
        sync_dir(self.directory)

    def _keep_released_ids(self, release: int) -> None:
        """Move the ids of records now in the store to the id file, on disk."""
        ids: list[tuple[str, str]] = []
        pending = self._unreleased_ids
        while pending and pending[0][0] <= release:
            ids.extend(pending.popleft()[1])
        if not ids:
            return
        now = time.time()
        if self._ids_file is None or now - self._ids_started >= self._ids_every:
            if self._ids_file is not None:
                self._ids_file.close()
            self._ids_started = now
            self._ids_file = open(ids_path(self.directory, self.node, now), "ab")  # noqa: SIM115
            sync_dir(self.directory)
            # Id files older than two windows are of no more use.
            forget_ids(self.directory, now - 2 * self._ids_every - 60)
        append_ids(self._ids_file, ids)

    def _delete_applied(self, release: int, closing: bool) -> None:
        """Delete segments, oldest first, whose data records are all in the store
        (and so their ids in an id file)."""
        gone = False
        while self._seg_max and self._seg_max[0][1] <= release:
            current = len(self._seg_max) == 1
            if current and not (closing and release >= self._number):
                break
            path, _ = self._seg_max.pop(0)
            if current:
                self._seg.close()
                self._seg = None
            path.unlink(missing_ok=True)
            gone = True
        if gone:
            sync_dir(self.directory)
