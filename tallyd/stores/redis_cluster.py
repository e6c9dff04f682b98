"""The Redis Cluster store: the same layout and contract, spread over slots.

Keys keep the first seed's names exactly (no hash tags), so they spread over
all 16,384 slots by their own hash, and the hot `all` rollup lands on many
nodes rather than serialising one. Exactly-once therefore works per slot: a
batch is cut into one group per slot, and each group is applied by the same
Lua script as on a single Redis (`redis.APPLY`), against a batch marker that
lives in that slot (`tallyd:batches:{<tag>}`, the tag chosen so its hash is
the slot). A retry after a partial failure skips the slots that were done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import NoScriptError, RedisError

from tallyd.stores.base import Batch, Contents, Snapshot, StoreError
from tallyd.stores.redis import (
    APPLY,
    SCAN_COUNT,
    WRITE,
    RedisCommands,
    script_call,
    to_ints,
    write_call,
)

# KEYS: the slot's marker, then the hashes; returns the marker and each HGETALL.
CONCURRENCY = 64

READ = """
local out = {redis.call('HGET', KEYS[1], ARGV[1]) or '0'}
for i = 2, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"""


@cache
def slot_tags() -> list[str]:
    """For every slot, a short string whose hash is that slot."""
    tags = [""] * REDIS_CLUSTER_HASH_SLOTS
    missing, i = REDIS_CLUSTER_HASH_SLOTS, 0
    while missing:
        tag = str(i)
        slot = key_slot(tag.encode())
        if not tags[slot]:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tags


def nodes_of(url: str) -> list[ClusterNode]:
    """`redis+cluster://h1:p1,h2:p2` → the startup nodes."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    out = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r} is not HOST:PORT")
        out.append(ClusterNode(host.strip("[]"), int(port)))
    return out


class Group:
    """The part of a batch that falls in one slot."""

    __slots__ = ("counters", "expire_at", "indexes", "rankings", "registers", "uniques")

    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = {}
        self.indexes: dict[str, list[str]] = {}
        self.rankings: dict[str, dict[str, int]] = {}
        self.expire_at: dict[str, int] = {}
        self.uniques: dict[str, list[str]] = {}
        self.registers: dict[str, bytes] = {}

    def contents(self) -> Contents:
        indexes = {k: set(ms) for k, ms in self.indexes.items()}
        return Contents(self.counters, indexes, self.rankings, self.registers, self.expire_at)


def by_slot(b: Batch | Contents) -> dict[int, Group]:
    groups: dict[int, Group] = {}

    def group(key: str) -> Group:
        slot = key_slot(key.encode())
        g = groups.get(slot)
        if g is None:
            g = groups[slot] = Group()
        return g

    for key, fields in b.counters.items():
        group(key).counters[key] = fields
    for key, members in b.indexes.items():
        group(key).indexes[key] = list(members)
    for key, scores in b.rankings.items():
        group(key).rankings[key] = scores
    for key, at in b.expire_at.items():
        group(key).expire_at[key] = at
    if isinstance(b, Batch):
        for key, hashes in b.uniques.items():
            group(key).uniques[key] = hashes
    else:
        for key, blob in b.registers.items():
            group(key).registers[key] = blob
    return groups


class RedisClusterStore(RedisCommands):
    @staticmethod
    def check_url(url: str) -> None:
        nodes_of(url)
        # The client is built from the nodes and the password alone: an option
        # would be ignored, so none is taken.
        query = urlsplit(url).query
        if query:
            names = ", ".join(repr(n) for n in parse_qs(query, keep_blank_values=True)) or "?"
            raise ValueError(f"unknown option {names} (redis+cluster:// takes no options)")

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self.url = url
        self.prefix = key_prefix
        self._r = self._client()
        # Not initialised yet: the first call (open) starts from a new client.
        self._broken = True
        # Script name → its SHA on the masters, loaded with each new client.
        self._shas: dict[str, str] = {}
        self.ledger = f"{key_prefix}tallyd:imports"

    def _client(self) -> RedisCluster:
        return RedisCluster(
            startup_nodes=nodes_of(self.url),
            password=urlsplit(self.url).password,
            socket_timeout=10,
            socket_connect_timeout=5,
            require_full_coverage=False,
        )

    def marker(self, slot: int, name: str = "batches") -> str:
        """A bookkeeping key of tallyd's in `slot`: the batch marker, by default."""
        return f"{self.prefix}tallyd:{name}:{{{slot_tags()[slot]}}}"

    async def open(self) -> None:
        """Connect, and raise StoreError unless every slot is served by a cluster in state ok.

        The client alone opens happily on a cluster still forming (it serves the
        slots some node knows of), so the first writes would fail instead.
        """
        self._broken = True
        await self._guarded(self._check_ready)

    async def _check_ready(self) -> None:
        served = len(self._r.nodes_manager.slots_cache)
        if served < REDIS_CLUSTER_HASH_SLOTS:
            raise StoreError(f"{served} of {REDIS_CLUSTER_HASH_SLOTS} slots are served")
        for node in self._r.get_primaries():
            state = (await self._r.cluster_info(target_nodes=node)).get("cluster_state")
            if state != "ok":
                raise StoreError(f"{node.name} reports cluster_state:{state}")

    async def _guarded(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run `call`; after any failure, the next call starts from a new client.

        After a master restarts, redis-py's cluster client can keep handing out
        connections whose transport is closed (seen here: every retry failing
        for a minute), so a failed call's client is not trusted again. Any
        exception counts: initialising against a node whose cluster has no
        slots yet raises IndexError from inside redis-py.
        """
        try:
            if self._broken:
                with contextlib.suppress(Exception):
                    await self._r.aclose()
                self._r = self._client()
                await self._r.initialize()
                await self._load_scripts()
                self._broken = False
            return await call()
        except Exception as exc:
            self._broken = True
            # Errors from outside redis-py's own (IndexError...) are named, not just told.
            detail = (
                str(exc) if isinstance(exc, RedisError | StoreError) and str(exc) else repr(exc)
            )
            raise StoreError(f"redis cluster: {detail}") from exc

    async def _load_scripts(self) -> None:
        # The cluster client sends SCRIPT LOAD to every primary.
        for name, script in (("apply", APPLY), ("read", READ), ("write", WRITE)):
            self._shas[name] = await self._r.script_load(script)

    async def _scripts(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run (script name, keys, args) calls concurrently, each routed to its slot's node.

        The cluster client does not pipeline scripts, so calls go concurrently,
        bounded below the client's connection pool. A node that restarted has
        forgotten the scripts: they are loaded again and the calls repeated,
        which both scripts make safe.
        """
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(sha: str, keys: list[str], args: list[Any]) -> Any:
            async with limit:
                return await self._r.evalsha(sha, len(keys), *keys, *args)

        async def run() -> list[Any]:
            # Resolve the SHA at call time: a reload replaces it.
            return list(
                await asyncio.gather(
                    *(one(self._shas[name], keys, args) for name, keys, args in calls)
                )
            )

        try:
            return await run()
        except NoScriptError:
            await self._load_scripts()
            return await run()

    async def apply(self, batch: Batch) -> bool:
        if batch.encoded is None:
            batch.encoded = self._calls(batch)
        calls = batch.encoded
        if not calls:
            return False
        results = await self._guarded(lambda: self._scripts(calls))
        return any(results)

    def _calls(self, batch: Batch) -> list[tuple[str, list[str], list[Any]]]:
        calls: list[tuple[str, list[str], list[Any]]] = []
        for slot, g in by_slot(batch).items():
            keys, args = script_call(
                self.marker(slot),
                batch.node,
                batch.seq,
                g.counters,
                g.indexes,
                g.rankings,
                g.expire_at,
                g.uniques,
            )
            calls.append(("apply", keys, args))
        return calls

    async def read(self, keys: Sequence[str], node: str) -> Snapshot:
        slots: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            slots.setdefault(key_slot(k.encode()), []).append(i)
        order = list(slots.items())
        calls = [
            ("read", [self.marker(slot), *(keys[i] for i in idx)], [node]) for slot, idx in order
        ]
        results = await self._guarded(lambda: self._scripts(calls)) if calls else []
        hashes: list[dict[str, int]] = [{} for _ in keys]
        applied = [0] * len(keys)
        for (_, idx), result in zip(order, results, strict=True):
            seq = int(result[0])
            for i, flat in zip(idx, result[1:], strict=True):
                applied[i] = seq
                hashes[i] = to_ints(dict(zip(flat[::2], flat[1::2], strict=True)))
        return Snapshot(hashes, min(applied, default=0), applied)

    # -- export and import (tallyd.transfer) -----------------------------------

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await self._guarded(fn)

    async def _targets(self) -> list[Any]:
        return list(self._r.get_primaries())

    async def _scan_page(self, target: Any, cursor: int) -> tuple[int, list[bytes]]:
        cursors, keys = await self._r.scan(cursor, count=SCAN_COUNT, target_nodes=target)
        return int(cursors[target.name]), keys

    async def _dbsize(self, target: Any) -> int:
        return int(await self._r.execute_command("DBSIZE", target_nodes=target))

    def _pipeline(self) -> Any:
        return self._r.pipeline()

    def _atomic(self) -> Any:
        # A cluster has no MULTI across slots: an owner's change goes key by key.
        return self._r.pipeline()

    async def write(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        # Atomic per slot, as a batch is: each slot's group behind a marker in the slot.
        calls: list[tuple[str, list[str], list[Any]]] = []
        for slot, g in by_slot(part).items():
            marker, scratch = self.marker(slot, "import-runs"), self.marker(slot, "scratch")
            calls.append(("write", *write_call(marker, scratch, run, seq, mode, g.contents())))
        if not calls:
            return False
        results = await self._guarded(lambda: self._scripts(calls))
        return any(results)

    async def forget_run(self, run: str) -> None:
        # Every slot's marker: a resumed run wrote some slots in an earlier process.
        async def forget() -> None:
            async with self._r.pipeline() as p:
                for slot in range(REDIS_CLUSTER_HASH_SLOTS):
                    p.hdel(self.marker(slot, "import-runs"), run)
                await p.execute()

        await self._guarded(forget)
