"""The SQLite store: the zero-set-up default.

One writer thread applies each batch in one transaction (WAL mode, so readers
never wait for it). Reads run in a small pool of reader threads, each with its own
connection, and are cut at a time limit: most take microseconds, but one slow read
on the event loop (a cold page cache, a huge key list) would stall every request
behind it. The hop to a thread and back (50-150 µs on a busy 2-core machine) is
the price of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import orjson

from tallyd import hll
from tallyd.stores import hll_codec
from tallyd.stores.base import Batch, Contents, Edit, Snapshot, StoreError, StoreUnusable

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (key, field)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexes (
    key TEXT NOT NULL, member TEXT NOT NULL,
    PRIMARY KEY (key, member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rankings (
    key TEXT NOT NULL, member TEXT NOT NULL, score INTEGER NOT NULL,
    PRIMARY KEY (key, member)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rankings_by_score ON rankings (key, score);
CREATE TABLE IF NOT EXISTS uniques (key TEXT PRIMARY KEY, registers BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expiry (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expiry_by_time ON expiry (at);
CREATE TABLE IF NOT EXISTS batches (
    node TEXT PRIMARY KEY, seq INTEGER NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS import_runs (run TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    fingerprint TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
"""

# SQLite allows 32766 bound parameters; stay well under it.
CHUNK = 500
# Counter hashes and the batch marker in one statement, so one snapshot with no
# BEGIN/COMMIT; the keys go in as one JSON array, the cells come back as one: a read
# crosses from SQLite to Python (and takes the GIL from the event loop) a few times,
# not once per row.
READ = (
    "SELECT (SELECT seq FROM batches WHERE node = ?), "
    "(SELECT json_group_array(json_array(key, field, value)) FROM counters "
    "WHERE key IN (SELECT value FROM json_each(?)))"
)
# Pages of an export, in rows (sketches are up to 16 KiB each: fewer of them).
PAGE = 5000
SKETCH_PAGE = 200
# Each table's rows after a (key[, second column]) cursor, in key order.
SCAN = {
    "counters": "SELECT key, field, value FROM counters WHERE (key, field) > (?, ?) "
    "ORDER BY key, field LIMIT ?",
    "indexes": "SELECT key, member, 0 FROM indexes WHERE (key, member) > (?, ?) "
    "ORDER BY key, member LIMIT ?",
    "rankings": "SELECT key, member, score FROM rankings WHERE (key, member) > (?, ?) "
    "ORDER BY key, member LIMIT ?",
    "uniques": "SELECT key, '', registers FROM uniques WHERE (key, '') > (?, ?) "
    "ORDER BY key LIMIT ?",
    "expiry": "SELECT key, '', at FROM expiry WHERE (key, '') > (?, ?) ORDER BY key LIMIT ?",
}
# An import's counts and scores, added to or in place of what is there.
UPSERT = {
    "add": ("value + excluded.value", "score + excluded.score", "max(at, excluded.at)"),
    "set": ("excluded.value", "excluded.score", "excluded.at"),
}
# Past the largest code point: an exclusive upper bound for a prefix range.
TOP = "\U0010ffff"
PRUNE_ROWS = 2000
# Reader threads, each with its own connection: two keep one slow read from
# holding up the rest without more threads than this 2-core target has cores.
# They are tallyd's own threads rather than a ThreadPoolExecutor: a read handed
# over with one asyncio future, answered by one call_soon_threadsafe, cost the event
# loop's thread 180-220 µs of CPU per view of a badge never seen, against 295-310 µs
# through an executor's futures (and 220-240 µs with reads on the loop).
READERS = 2
# Seconds a read may take from being asked (waiting for a reader included) before it
# is cut with StoreError. A badge or period read takes well under a millisecond; one
# second is past any read that should succeed, and short enough that a client
# waiting on it gets its 503 before giving up.
READ_TIMEOUT = 1.0
# SQLite virtual-machine steps between two looks at the clock during a read.
CHECK_EVERY = 1000
# Errors at start that waiting will not mend: a read-only file, one that is not a
# database (or is damaged), a path that cannot be opened (a directory, no access).
UNUSABLE = {
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
}

T = TypeVar("T")


def rollback(c: sqlite3.Connection) -> None:
    """Roll back what is under way, if anything is. SQLite ends a transaction by
    itself on some errors (a full disk): a ROLLBACK then would raise "no transaction
    is active" in place of the error that matters."""
    if c.in_transaction:
        c.execute("ROLLBACK")


def path_of(url: str) -> str:
    """The database file, by SQLAlchemy's convention: what follows `sqlite:///`.

    `sqlite:///tallyd.db` is relative to the working directory (as is
    `sqlite:///./tallyd.db`), `sqlite:////var/lib/tallyd/tallyd.db` absolute.
    """
    parts = urlsplit(url)
    if parts.netloc or not url.startswith("sqlite://"):
        raise ValueError("the file's path follows three slashes, as in sqlite:///tallyd.db")
    if parts.query or parts.fragment:
        raise ValueError("SQLite takes no options in its URL")
    path = unquote(parts.path[1:])
    if not path or path.endswith("/"):
        raise ValueError("no database file named")
    return path


# Rows per JSON document (`_encode`). orjson holds the GIL while it writes one, and
# the event loop waits meanwhile: a flood's batch of 20,000 new accounts was 3 MB of
# documents, 12 ms in one go. Between documents the writer runs statements, which
# release the GIL, so the loop waits at most about one document (~0.1 ms) at a time.
DOCUMENT_ROWS = 1000
# Counter hashes have at most 60 fields (an hour's minutes), so their documents are
# cut by keys, in C (`islice`); an index or a ranking can hold any number of members.
DOCUMENT_KEYS = 1000

Documents = tuple[list[bytes], list[bytes], list[bytes], list[bytes]]


def _encode(counters: Any, indexes: Any, rankings: Any, expire_at: Any) -> Documents:
    """Each table's rows as JSON documents of about DOCUMENT_ROWS rows (`_upsert`)."""
    return (
        _by_keys(counters),
        _by_rows({k: list(ms) for k, ms in indexes.items()}),
        _by_rows(rankings),
        _by_keys(expire_at),
    )


def _by_keys(table: dict[str, Any]) -> list[bytes]:
    """`table` as JSON objects of DOCUMENT_KEYS keys each."""
    items = iter(table.items())
    docs = []
    while part := dict(itertools.islice(items, DOCUMENT_KEYS)):
        docs.append(orjson.dumps(part))
    return docs


def _by_rows(table: dict[str, Any]) -> list[bytes]:
    """`{key: rows}` (a dict or a list of rows per key) as JSON objects of the same
    shape, each of at most DOCUMENT_ROWS rows; a key with more rows than that is split
    across objects, so no (key, row) pair is in two of them."""
    docs: list[bytes] = []
    part: dict[str, Any] = {}
    size = 0
    for key, rows in table.items():
        n = len(rows)
        if size + n > DOCUMENT_ROWS and part:
            docs.append(orjson.dumps(part))
            part, size = {}, 0
        if n <= DOCUMENT_ROWS:
            part[key] = rows
            size += n
            continue
        if isinstance(rows, dict):
            members = iter(rows.items())
            while piece := dict(itertools.islice(members, DOCUMENT_ROWS)):
                docs.append(orjson.dumps({key: piece}))
        else:
            for i in range(0, n, DOCUMENT_ROWS):
                docs.append(orjson.dumps({key: rows[i : i + DOCUMENT_ROWS]}))
    if part:
        docs.append(orjson.dumps(part))
    return docs


def _upsert(c: sqlite3.Connection, encoded: Documents, mode: str) -> None:
    """Write `_encode`'s documents, adding counts and scores to what is there
    (`mode` "add") or putting them in its place ("set")."""
    counters, indexes, rankings, expire_at = encoded
    value, score, at = UPSERT[mode]
    statements = (
        (
            counters,
            "INSERT INTO counters (key, field, value) "
            "SELECT k.key, f.key, f.value FROM json_each(?) AS k, json_each(k.value) AS f "
            f"WHERE true ON CONFLICT (key, field) DO UPDATE SET value = {value}",
        ),
        (
            indexes,
            "INSERT OR IGNORE INTO indexes (key, member) "
            "SELECT k.key, m.value FROM json_each(?) AS k, json_each(k.value) AS m",
        ),
        (
            rankings,
            "INSERT INTO rankings (key, member, score) "
            "SELECT k.key, m.key, m.value FROM json_each(?) AS k, json_each(k.value) AS m "
            f"WHERE true ON CONFLICT (key, member) DO UPDATE SET score = {score}",
        ),
        (
            expire_at,
            "INSERT INTO expiry (key, at) SELECT key, value FROM json_each(?) "
            f"WHERE true ON CONFLICT (key) DO UPDATE SET at = {at}",
        ),
    )
    for docs, sql in statements:
        for doc in docs:
            c.execute(sql, (doc,))


def _sketches(c: sqlite3.Connection, keys: list[str]) -> dict[str, bytes]:
    """The stored sketches of these keys (those that have one)."""
    stored: dict[str, bytes] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = c.execute(f"SELECT key, registers FROM uniques WHERE key IN ({marks})", chunk)
        stored.update(rows)
    return stored


class _Reader:
    """One reader thread's connection, and when its current read must stop."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.deadline = 0.0  # set by each read before it starts
        conn.execute("PRAGMA query_only = 1")
        conn.set_progress_handler(self.expired, CHECK_EVERY)

    def expired(self) -> bool:
        # A true answer makes SQLite stop the statement with SQLITE_INTERRUPT.
        return time.monotonic() > self.deadline


def _contents(table: str, rows: list[Any], wanted: Callable[[str], bool]) -> Contents:
    """One page of a table's rows (key, second column, value) as Contents."""
    part = Contents(scanned=len(rows))
    for key, second, value in rows:
        if not wanted(key):
            continue
        if table == "counters":
            part.counters.setdefault(key, {})[second] = value
        elif table == "indexes":
            part.indexes.setdefault(key, set()).add(second)
        elif table == "rankings":
            part.rankings.setdefault(key, {})[second] = value
        elif table == "uniques":
            part.registers[key] = bytes(value)
        else:
            part.expire_at[key] = value
    return part


def _settle(answer: asyncio.Future[Any], result: Any, exc: Exception | None) -> None:
    if answer.cancelled():
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)


class SQLiteStore:
    check_url = staticmethod(path_of)

    def __init__(self, url: str, key_prefix: str = "", read_timeout: float = READ_TIMEOUT) -> None:
        """`read_timeout`: seconds a read may take (READ_TIMEOUT); tests shorten it."""
        # The batch marker is a table here, so the key prefix has nothing to name.
        self.url = url
        self.path = path_of(url)
        self.read_timeout = read_timeout
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tallyd-sqlite")
        self._w: sqlite3.Connection | None = None
        # (deadline, read, loop, future) for the readers; None tells one to stop.
        self._reads: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._serve_reads, name=f"tallyd-sqlite-read-{i}", daemon=True)
            for i in range(READERS)
        ]
        self._local = threading.local()
        # Every reader connection opened, for close(); appended to by reader threads.
        self._reader_conns: list[sqlite3.Connection] = []
        self._reading = False
        # (device, inode) of the file opened: a file deleted or replaced under a
        # running tallyd would otherwise take every later count into the void.
        self._identity: tuple[int, int] | None = None

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        """A connection to the file; only the writer's first may create it: a reader
        opening a file deleted under tallyd made an empty one in its place."""
        target = self.path if create else f"{Path(self.path).absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, uri=not create
        )
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    async def _in_writer(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, fn, *args)
        except (sqlite3.Error, OSError) as exc:  # OSError: making the file's directory
            raise StoreError(f"sqlite: {exc}") from exc

    def _open_sync(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        w = self._connect(create=True)
        w.execute("PRAGMA journal_mode = WAL")
        # FULL: a batch is acknowledged to the aggregator only once it is on disk.
        w.execute("PRAGMA synchronous = FULL")
        w.executescript(SCHEMA)
        # A file that cannot be written (read-only, left so by a crash or a copy)
        # is refused now, not found out when the first batch fails.
        (version,) = w.execute("PRAGMA user_version").fetchone()
        w.execute(f"PRAGMA user_version = {int(version)}")
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._w = w

    def _check_file(self) -> None:
        """Raise StoreUnusable if the database file is no longer the one opened: what
        is written or read now would go to, or come from, a file nobody will see."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreUnusable("sqlite: the database file was deleted while tallyd ran") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreUnusable("sqlite: the database file was replaced while tallyd ran")

    async def open(self) -> None:
        try:
            await self._in_writer(self._open_sync)
        except StoreError as exc:
            cause = exc.__cause__
            # The primary code: the low byte of an extended one (SQLITE_READONLY_DBMOVED…).
            if isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode & 0xFF in UNUSABLE:
                raise StoreUnusable(str(exc)) from cause
            raise
        for thread in self._readers:
            thread.start()
        self._reading = True

    def _apply_sync(self, b: Batch) -> bool:
        assert self._w is not None
        self._check_file()
        if b.encoded is None:
            # A table's rows go in as JSON documents of a thousand rows, a statement
            # each: SQLite then loops in C, instead of Python re-taking the GIL for
            # every row (which stalls behind the ingest thread for up to 5 ms a time).
            b.encoded = _encode(b.counters, b.indexes, b.rankings, b.expire_at)
        c = self._w
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT seq FROM batches WHERE node = ?", (b.node,)).fetchone()
            if row is not None and row[0] >= b.seq:
                c.execute("ROLLBACK")
                return False
            _upsert(c, b.encoded, "add")
            self._add_uniques(c, b.uniques)
            c.execute(
                "INSERT INTO batches (node, seq, at) VALUES (?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, at = excluded.at",
                (b.node, b.seq, time.time()),
            )
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        return True

    def _add_uniques(self, c: sqlite3.Connection, uniques: dict[str, list[str]]) -> None:
        stored = _sketches(c, list(uniques))
        changed = []
        for key, hashes in uniques.items():
            registers, rose = hll.add(hll.load(stored.get(key)), hashes)
            if rose:
                changed.append((key, hll.dump(registers)))
        c.executemany("INSERT OR REPLACE INTO uniques (key, registers) VALUES (?, ?)", changed)

    async def apply(self, batch: Batch) -> bool:
        applied: bool = await self._in_writer(self._apply_sync, batch)
        return applied

    def _reader(self) -> _Reader:
        """This reader thread's connection, opened on its first read."""
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            conn = self._connect()
            self._reader_conns.append(conn)
            reader = self._local.reader = _Reader(conn)
        return reader

    def _read_sync(self, deadline: float, fn: Callable[[sqlite3.Connection], T]) -> T:
        if time.monotonic() > deadline:
            # Waited its whole time for a reader: not worth starting.
            raise StoreError(f"sqlite: a read waited over {self.read_timeout:g} s for a reader")
        try:
            self._check_file()
            reader = self._reader()
            reader.deadline = deadline
            return fn(reader.conn)
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT:
                raise StoreError(
                    f"sqlite: a read took over {self.read_timeout:g} s and was stopped"
                ) from exc
            raise StoreError(f"sqlite: {exc}") from exc

    async def _in_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._reading:
            raise StoreError("sqlite store is not open")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        self._reads.put((time.monotonic() + self.read_timeout, fn, loop, answer))
        return await answer

    def _serve_reads(self) -> None:
        """A reader thread: reads one at a time until told to stop."""
        while (work := self._reads.get()) is not None:
            deadline, fn, loop, answer = work
            result: tuple[Any, Exception | None]
            try:
                result = (self._read_sync(deadline, fn), None)
            except Exception as exc:
                result = (None, exc)
            # A loop closed under a read (no close() first) takes no answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, answer, *result)

    async def read(self, keys: Sequence[str], node: str) -> Snapshot:
        def read(c: sqlite3.Connection) -> Snapshot:
            # Encoded here, not on the loop: a list of a million keys takes 100 ms.
            wanted = orjson.dumps(list(keys))
            seq, cells = c.execute(READ, (node, wanted)).fetchone()
            found: dict[str, dict[str, int]] = {}
            for k, f, n in orjson.loads(cells):
                found.setdefault(k, {})[f] = n
            return Snapshot([found.get(k, {}) for k in keys], seq or 0)

        return await self._in_reader(read)

    async def unique(self, key: str) -> int:
        def unique(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT registers FROM uniques WHERE key = ?", (key,)).fetchone()
            return hll.estimate(hll.load(row[0])) if row else 0

        return await self._in_reader(unique)

    async def members(self, key: str, prefix: str, after: str, limit: int) -> list[str]:
        start = max(after, prefix)

        def members(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "SELECT member FROM indexes WHERE key = ? AND member >= ? AND member > ? "
                "AND member < ? ORDER BY member LIMIT ?",
                (key, start, after, prefix + TOP, limit),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._in_reader(members)

    async def top(self, key: str, limit: int) -> list[tuple[str, int]]:
        def top(c: sqlite3.Connection) -> list[tuple[str, int]]:
            rows = c.execute(
                "SELECT member, score FROM rankings WHERE key = ? "
                "ORDER BY score DESC, member LIMIT ?",
                (key, limit),
            ).fetchall()
            return [(m, s) for m, s in rows]

        return await self._in_reader(top)

    def _prune_sync(self, now: int) -> int:
        assert self._w is not None
        c = self._w
        c.execute("BEGIN IMMEDIATE")
        try:
            keys = [
                (k,)
                for (k,) in c.execute(
                    "SELECT key FROM expiry WHERE at <= ? LIMIT ?", (now, PRUNE_ROWS)
                )
            ]
            c.executemany("DELETE FROM counters WHERE key = ?", keys)
            c.executemany("DELETE FROM uniques WHERE key = ?", keys)
            c.executemany("DELETE FROM expiry WHERE key = ?", keys)
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        return len(keys)

    async def prune(self, now: int) -> int:
        # Small transactions, one after another on the writer thread, so a large
        # backlog of expired keys never holds up a batch for long.
        total = 0
        while True:
            n: int = await self._in_writer(self._prune_sync, now)
            total += n
            if n < PRUNE_ROWS:
                return total

    def _edit_sync(self, change: Edit) -> None:
        assert self._w is not None
        self._check_file()
        c = self._w
        drop = [(k,) for k in change.drop]
        c.execute("BEGIN IMMEDIATE")
        try:
            for table in ("counters", "uniques", "expiry"):
                c.executemany(f"DELETE FROM {table} WHERE key = ?", drop)
            # Redis keeps indexes and rankings alike (sorted sets): a member goes from both.
            for table in ("indexes", "rankings"):
                c.executemany(f"DELETE FROM {table} WHERE key = ? AND member = ?", change.members)
            c.executemany(
                "INSERT OR IGNORE INTO indexes (key, member) VALUES (?, ?)", change.listed
            )
            for key, values in change.fields.items():
                for name, value in values.items():
                    if value:
                        c.execute(
                            "INSERT INTO counters (key, field, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (key, field) DO UPDATE SET value = excluded.value",
                            (key, name, value),
                        )
                    else:
                        c.execute("DELETE FROM counters WHERE key = ? AND field = ?", (key, name))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    async def edit(self, change: Edit) -> None:
        await self._in_writer(self._edit_sync, change)

    # -- export and import (tallyd.transfer) -----------------------------------

    async def size(self) -> int:
        def size(c: sqlite3.Connection) -> int:
            return sum(int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in SCAN)

        try:
            return await self._in_reader(size)
        except StoreError:  # a table too large to count within a read's time: unknown
            return 0

    async def scan(self, wanted: Callable[[str], bool]) -> AsyncIterator[Contents]:
        # Page by page in key order, each page a read of its own: a store being
        # written meanwhile is not frozen for the whole export.
        for table, query in SCAN.items():
            page = SKETCH_PAGE if table == "uniques" else PAGE
            after: tuple[str, str] = ("", "")
            while True:

                def rows_after(
                    c: sqlite3.Connection, q: str = query, a: tuple[str, str] = after, n: int = page
                ) -> list[Any]:
                    return c.execute(q, (*a, n)).fetchall()

                rows = await self._in_reader(rows_after)
                if not rows:
                    break
                after = (rows[-1][0], rows[-1][1])
                yield _contents(table, rows, wanted)
                if len(rows) < page:
                    break

    def _write_sync(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        assert self._w is not None
        self._check_file()
        encoded = _encode(part.counters, part.indexes, part.rankings, part.expire_at)
        c = self._w
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT seq FROM import_runs WHERE run = ?", (run,)).fetchone()
            if row is not None and row[0] >= seq:
                c.execute("ROLLBACK")
                return False
            _upsert(c, encoded, mode)
            sketches = part.registers
            if mode == "add":
                stored = _sketches(c, list(sketches))
                sketches = {
                    k: hll.dump(hll_codec.merge(hll.load(stored.get(k)), hll.load(blob)))
                    for k, blob in sketches.items()
                }
            c.executemany(
                "INSERT OR REPLACE INTO uniques (key, registers) VALUES (?, ?)", sketches.items()
            )
            c.execute(
                "INSERT INTO import_runs (run, seq) VALUES (?, ?) "
                "ON CONFLICT (run) DO UPDATE SET seq = excluded.seq",
                (run, seq),
            )
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        return True

    async def write(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        written: bool = await self._in_writer(self._write_sync, part, mode, run, seq)
        return written

    async def forget_run(self, run: str) -> None:
        def forget() -> None:
            assert self._w is not None
            self._w.execute("DELETE FROM import_runs WHERE run = ?", (run,))

        await self._in_writer(forget)

    async def imported(self, fingerprint: str) -> dict[str, Any] | None:
        def entry(c: sqlite3.Connection) -> Any:
            return c.execute(
                "SELECT entry FROM imports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()

        row = await self._in_reader(entry)
        return orjson.loads(row[0]) if row else None

    async def remember_import(self, fingerprint: str, entry: dict[str, Any]) -> None:
        def remember() -> None:
            assert self._w is not None
            self._w.execute(
                "INSERT OR REPLACE INTO imports (fingerprint, entry) VALUES (?, ?)",
                (fingerprint, orjson.dumps(entry).decode()),
            )

        await self._in_writer(remember)

    async def ping(self) -> None:
        await self._in_reader(lambda c: c.execute("SELECT 1").fetchone())
        if self._identity is not None:
            try:
                self._check_file()
            except OSError as exc:
                raise StoreError(f"sqlite: {exc}") from exc

    async def close(self) -> None:
        def _close() -> None:
            if self._w is not None:
                self._w.close()
                self._w = None

        self._reading = False
        # Reads under way end first (each within its time limit), then their
        # connections close; a connection may be closed from any thread.
        for _ in self._readers:
            self._reads.put(None)
        for thread in self._readers:
            if thread.is_alive():
                await asyncio.to_thread(thread.join)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()
        await self._in_writer(_close)
        self._writer.shutdown(wait=True)
