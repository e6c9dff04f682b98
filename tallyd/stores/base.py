"""The store contract every backend implements (SPEC §3).

A store only knows three shapes, the ones the Redis layout is made of: counter
hashes (key → field → integer), lexicographic indexes (key → sorted members),
and rankings (key → member → score). Everything tallyd-specific — periods,
rollups, escaping — is decided before a `Batch` reaches the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class StoreError(Exception):
    """The store could not be reached or refused an operation; retry later."""


class StoreUnusable(StoreError):
    """The store can never work as it is (a read-only file, not a database):
    waiting will not help, so start-up ends at once."""


@dataclass
class Batch:
    """One flush: applied atomically, and at most once per (node, seq)."""

    node: str
    seq: int
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    indexes: dict[str, set[str]] = field(default_factory=dict)
    rankings: dict[str, dict[str, int]] = field(default_factory=dict)
    # key → Unix time after which the key may be deleted (retention).
    expire_at: dict[str, int] = field(default_factory=dict)
    # HyperLogLog key → visitor hashes (16 hex digits) to add; adding is idempotent.
    uniques: dict[str, list[str]] = field(default_factory=dict)
    cells: int = 0
    # What a store made of the batch to send it (its JSON documents), kept for a
    # retry: re-encoding a stuck batch on every attempt cost ingest its CPU.
    encoded: Any = None

    def cell_count(self) -> int:
        """Distinct (key, field) counter cells, the unit flush speed is measured in."""
        return sum(len(f) for f in self.counters.values())


@dataclass
class Snapshot:
    """Hashes read together, with the last batch of `node` each one includes.

    A store with one batch marker has one `applied_seq` for every key; Redis
    Cluster keeps a marker per slot, so `applied` may differ key by key.
    """

    hashes: list[dict[str, int]]
    applied_seq: int
    applied: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.applied:
            self.applied = [self.applied_seq] * len(self.hashes)


@dataclass
class Edit:
    """An owner's change to what is stored (tallyd.owner), not a count: keys deleted
    whole, members taken out of indexes and rankings, and counter fields set
    (a value of 0 removes the field)."""

    drop: list[str] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)  # (key, member)
    fields: dict[str, dict[str, int]] = field(default_factory=dict)
    # (index key, member) added: an id given a baseline is listed as one with counts.
    listed: list[tuple[str, str]] = field(default_factory=list)


class Store(Protocol):
    """What the aggregator and the API need from a backend."""

    url: str

    async def open(self) -> None:
        """Connect and create what is missing; raise StoreError if unreachable."""

    async def apply(self, batch: Batch) -> bool:
        """Apply a batch atomically; False (and no change) if it was applied before."""

    async def read(self, keys: Sequence[str], node: str) -> Snapshot:
        """Read counter hashes in one consistent snapshot."""

    async def unique(self, key: str) -> int:
        """The HyperLogLog estimate of the distinct hashes added to `key`."""

    async def members(self, key: str, prefix: str, after: str, limit: int) -> list[str]:
        """Index members in byte order, starting with `prefix`, greater than `after`."""

    async def top(self, key: str, limit: int) -> list[tuple[str, int]]:
        """The highest-scored members of a ranking, highest first."""

    async def prune(self, now: int) -> int:
        """Delete keys whose retention has passed; returns how many went."""

    async def edit(self, change: Edit) -> None:
        """Apply an owner's change: at once on SQLite and Redis, slot by slot on a cluster."""

    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    async def close(self) -> None:
        """Release connections; pending work is the caller's to flush first."""


@dataclass
class Contents:
    """Part of what a store holds, in a form every store shares: what an export
    reads and an import writes (tallyd.transfer).

    Keys are the store's own, key prefix included. `registers` holds HyperLogLog
    sketches as `tallyd.hll.dump` writes them, whatever the store keeps natively.
    A store that cannot tell an index from a ranking by its kind (Redis keeps both
    as sorted sets) puts both in `rankings`; the reader sorts them out by key.
    """

    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    indexes: dict[str, set[str]] = field(default_factory=dict)
    rankings: dict[str, dict[str, int]] = field(default_factory=dict)
    registers: dict[str, bytes] = field(default_factory=dict)
    expire_at: dict[str, int] = field(default_factory=dict)
    # Rows or keys the store went through to find these (progress of a scan).
    scanned: int = 0


class Transferable(Store, Protocol):
    """What export and import need from a store, besides the `Store` contract."""

    async def size(self) -> int:
        """Roughly how many rows or keys `scan` will go through (for progress)."""

    def scan(self, wanted: Callable[[str], bool]) -> AsyncIterator[Contents]:
        """Everything whose key is `wanted`, in parts of bounded size, page by page."""

    async def write(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        """Write `part` atomically, adding its counts (`mode` "add") or setting
        them (`mode` "set"); False (and no change) if part `seq` of import `run`
        was written before. Sketches are merged ("add") or replaced ("set")."""

    async def forget_run(self, run: str) -> None:
        """Drop the markers of a finished import's run (its parts are all written)."""

    async def imported(self, fingerprint: str) -> dict[str, Any] | None:
        """What the store remembers of an import, or None."""

    async def remember_import(self, fingerprint: str, entry: dict[str, Any]) -> None:
        """Remember an import (its file's or source's fingerprint → `entry`)."""
