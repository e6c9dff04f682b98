"""`tallyd export` and `tallyd import`: a store's contents to JSON Lines and back
(tallyd.records holds the format; docs/export-import.md tells the guarantees).

Both stream: an export reads the store a page at a time (SQLite in key order,
Redis by SCAN), an import writes a part of at most PART records at a time, each
part atomically (on Redis Cluster, atomically per slot) and at most once per
run, behind a marker of the run in the store. A file is read twice: first whole,
to check every line and take its SHA-256 (nothing is written if a line is bad),
then to write it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from tallyd import records
from tallyd.progress import Progress, rate
from tallyd.records import BadRecord, Filter, Tally
from tallyd.stores import kind, redact
from tallyd.stores.base import Contents, Transferable

# Records written in one atomic part.
PART = 5000
# Lines checked between two updates of the progress bar.
CHECK_STEP = 10_000


class Refused(Exception):
    """An import that must not go ahead as asked; the message says why and what to do."""


class BadLine(Exception):
    """A line of an import file that is no record; nothing was written."""

    def __init__(self, path: str, number: int, why: str) -> None:
        super().__init__(f"{path} line {number}: {why}; nothing was written")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def missing(url: str) -> str | None:
    """Why a store cannot be exported before it is opened: a SQLite file that is
    not there (opening it would make an empty one), or None."""
    if kind(url) != "sqlite":
        return None
    from tallyd.stores.sqlite import path_of

    path = path_of(url)
    return None if os.path.isfile(path) else f"no SQLite database {path} (--store {url})"


async def export(
    store: Transferable, url: str, out: BinaryIO, prefix: str, flt: Filter
) -> tuple[Tally, str]:
    """Write every wanted record of `store` to `out`; (records by kind, summary)."""
    started = time.monotonic()
    unit = "rows" if kind(url) == "sqlite" else "keys"
    progress = Progress("exporting", await store.size(), unit)
    tally = Tally()
    cut = len(prefix)

    def wanted(key: str) -> bool:
        k = records.classify(key[cut:]) if key.startswith(prefix) else None
        return k is not None and flt.key(k)

    out.write(records.header(kind(url), prefix, flt))
    try:
        async for part in store.scan(wanted):
            out.writelines(records.lines(part, prefix, flt, tally))
            progress.advance(part.scanned)
    except records.TooLarge as exc:
        raise Refused(str(exc)) from None
    finally:
        progress.close()
    out.write(records.trailer(tally.total()))
    took = time.monotonic() - started
    summary = (
        f"exported {tally.total():,} records ({tally.describe()}) from {redact(url)} "
        f"({progress.done:,} {unit}) in {took:.1f} s ({rate(tally.total(), took)})"
    )
    return tally, summary


@dataclass
class Checked:
    """An import file read whole: its fingerprint and how many records it holds."""

    sha256: str
    records: int


def check_file(path: str) -> Checked:
    """Read a file whole: every line a record (BadLine if not), and its SHA-256."""
    digest = hashlib.sha256()
    progress = Progress("checking", os.path.getsize(path), "bytes")
    count = 0
    header = end = None
    number = 0
    said_range = False
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                digest.update(line)
                if number % CHECK_STEP == 0:
                    progress.advance(f.tell() - progress.done)
                if not line.strip():
                    continue
                if end is not None:
                    raise BadLine(path, number, f"a record after the last line (line {end})")
                try:
                    record = records.parse(line)
                except BadRecord as exc:
                    raise BadLine(path, number, str(exc)) from None
                if record.kind == "header":
                    if count or header is not None:
                        raise BadLine(path, number, "a header that is not the first line")
                    header = number
                    said_range = _ranged(record.fields)
                elif record.kind == "baseline" and said_range:
                    # A baseline counts for all time: two ranges' files would add it twice.
                    raise BadLine(
                        path, number, "a baseline in the export of a date range, which has none"
                    )
                elif record.kind == "end":
                    end = number
                    said = record.fields["end"]["records"]
                    if said != count:
                        raise BadLine(
                            path, number, f"the file says {said:,} records, has {count:,}"
                        )
                else:
                    count += 1
            progress.advance(f.tell() - progress.done)
    finally:
        progress.close()
    if header is not None and end is None:
        raise BadLine(
            path, number, 'no last line {"end": ...}: the export that wrote it did not finish'
        )
    return Checked(digest.hexdigest(), count)


def _ranged(header: dict[str, Any]) -> bool:
    """Whether an export's header says it holds a date range (`--from`, `--to`)."""
    flt = header.get("filter")
    return isinstance(flt, dict) and bool(flt.get("from") or flt.get("to"))


@dataclass
class Start:
    """An import about to start: its run, a note for the user (or ""), and its
    entry in the store's ledger, recorded before its first part is written."""

    fingerprint: str
    run: str
    note: str
    entry: dict[str, Any]


async def begin(
    store: Transferable,
    fingerprint: str,
    what: str,
    mode: str,
    force: bool,
    resumable: bool,
    aliases: tuple[str, ...] = (),
) -> Start:
    """How an import about to start runs.

    An import that adds is remembered by its fingerprint (or any of its
    `aliases`, other names of the same source): the same again is refused (it
    would count twice) unless `force`. One that did not finish is resumed if
    `resumable` (a file: its parts are the same), else refused.
    """
    entry = await store.imported(fingerprint)
    for alias in aliases:
        entry = entry or await store.imported(alias)
    note = ""
    fresh = f"{fingerprint}:{time.time_ns()}"
    if mode == "set" or entry is None or entry.get("mode") != "add":
        run = fresh
    elif force:
        run = fresh
        note = f"importing {what} again (--force): its counts are added once more"
    elif entry.get("finished"):
        raise Refused(
            f"{what} was imported into this store (add) at {entry['finished']}: "
            "importing it again would count it twice; --force does so anyway"
        )
    elif resumable:
        run = str(entry["run"])
        note = (
            f"resuming the import of {what} begun at {entry['started']}: "
            "parts written then are skipped"
        )
    else:
        raise Refused(
            f"an import of {what} into this store began at {entry['started']} and did not "
            "finish: part of it is in the store; --force imports it all again (that part "
            "then counts twice)"
        )
    started = entry["started"] if entry is not None and run == entry.get("run") else _now()
    ledger = {"what": what, "mode": mode, "run": run, "started": started, "finished": None}
    return Start(fingerprint, run, note, ledger)


class Writer:
    """Writes an import's parts in order, each at most once for its run."""

    def __init__(self, store: Transferable, mode: str, start: Start, progress: Progress) -> None:
        self.store = store
        self.mode = mode
        self.start = start
        self.run = start.run
        self.progress = progress
        self.seq = 0
        self.written = 0
        self.skipped = 0

    async def write(self, part: Contents, count: int) -> None:
        if self.seq == 0:
            # Recorded with the first part, not before: an import that finds
            # nothing to write leaves no trace to refuse a later one with.
            await self.store.remember_import(self.start.fingerprint, self.start.entry)
        self.seq += 1
        if await self.store.write(part, self.mode, self.run, self.seq):
            self.written += 1
        else:
            self.skipped += 1
        self.progress.advance(count)

    def describe(self) -> str:
        if self.seq == 0:
            return "nothing to write, and the import is not recorded: it is not refused later"
        skipped = f", {self.skipped:,} skipped as written before" if self.skipped else ""
        return f"{self.written:,} parts written{skipped}"


async def write_all(
    store: Transferable,
    start: Start,
    mode: str,
    parts: Callable[[Writer], Awaitable[int]],
    progress: Progress,
) -> Writer:
    """Run `parts(writer)`, which writes every part and returns how many records
    (or events) they held, then remember the import done (if it wrote any)."""
    writer = Writer(store, mode, start, progress)
    try:
        count = await parts(writer)
    finally:
        progress.close()
    if writer.seq == 0:
        return writer
    entry = await store.imported(start.fingerprint) or dict(start.entry)
    entry.update(mode=mode, run=start.run, finished=_now(), records=count)
    await store.remember_import(start.fingerprint, entry)
    # Done: the ledger now refuses the same again, so the run's markers are spent.
    await store.forget_run(start.run)
    return writer


def checked_file(path: str) -> Checked:
    """The file an import reads, checked whole (BadLine, Refused): before the store
    is opened, so a bad file leaves no new store behind either."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise Refused(
            f"{path} is not a file: an import reads its file twice (to check it, then to "
            "write it), so save what a pipe gives to a file first"
        )
    return check_file(path)


async def import_file(
    store: Transferable,
    url: str,
    path: str,
    mode: str,
    force: bool,
    prefix: str,
    checked: Checked | None = None,
) -> list[str]:
    """Import a file (`checked_file`, if not `checked` already) into `store`; the
    lines to tell the user."""
    started = time.monotonic()
    checked = checked or checked_file(path)
    what = f"{os.path.basename(path)} (sha256 {checked.sha256[:12]})"
    start = await begin(store, f"file:{checked.sha256}", what, mode, force, resumable=True)

    async def parts(writer: Writer) -> int:
        part, n = Contents(), 0
        async for record in _records(path):
            records.add(part, record, prefix, mode)
            n += 1
            if n == PART:
                await writer.write(part, n)
                part, n = Contents(), 0
        if n:
            await writer.write(part, n)
        return checked.records

    progress = Progress("importing", checked.records, "records")
    writer = await write_all(store, start, mode, parts, progress)
    took = time.monotonic() - started
    return [
        *([start.note] if start.note else []),
        f"imported {checked.records:,} records from {path} into {redact(url)} ({mode}): "
        f"{writer.describe()}, in {took:.1f} s ({rate(checked.records, took)})",
    ]


async def _records(path: str) -> AsyncIterator[records.Record]:
    """The records of a file already checked, header and end left out."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                record = records.parse(line)
                if record.kind not in ("header", "end"):
                    yield record
