"""The Redis store: the first seed's layout, readable with `redis-cli`.

Counters are hashes (`HINCRBY`), indexes are sorted sets with every score 0 so
they page in name order (`ZRANGEBYLEX`), rankings are sorted sets by count
(`ZINCRBY`), retention is `EXPIREAT`. A batch is applied by one Lua script,
which first checks and then records the node's last batch number in
`tallyd:batches`: Redis runs a script atomically, so a batch retried after a
timeout or a reconnect is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from tallyd.stores.base import Batch, Snapshot, StoreError

# KEYS: the batch marker, then every key the batch touches (Redis's scripting
# contract: a script names its keys in KEYS, so a cluster, a proxy or a managed
# Redis can tell where it runs). ARGV: node, seq, then counters, indexes,
# rankings, expiries and HyperLogLog additions as JSON documents of
# [position in KEYS, data] pairs. One JSON argument per table instead of three
# arguments per cell: encoding hundreds of thousands of arguments was most of a
# flush's time, client-side.
APPLY = """
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if last >= tonumber(ARGV[2]) then return 0 end
for _, e in ipairs(cjson.decode(ARGV[3])) do
  local key = KEYS[e[1]]
  for field, n in pairs(e[2]) do redis.call('HINCRBY', key, field, n) end
end
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local key = KEYS[e[1]]
  for _, member in ipairs(e[2]) do redis.call('ZADD', key, 0, member) end
end
for _, e in ipairs(cjson.decode(ARGV[5])) do
  local key = KEYS[e[1]]
  for member, n in pairs(e[2]) do redis.call('ZINCRBY', key, n, member) end
end
for _, e in ipairs(cjson.decode(ARGV[7])) do
  local key, hashes = KEYS[e[1]], e[2]
  for i = 1, #hashes, 500 do
    redis.call('PFADD', key, unpack(hashes, i, math.min(i + 499, #hashes)))
  end
end
for _, e in ipairs(cjson.decode(ARGV[6])) do redis.call('EXPIREAT', KEYS[e[1]], e[2]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def tables(b: Batch) -> tuple[Any, ...]:
    """A batch's number and tables, in `script_call`'s order after the marker."""
    return (b.node, b.seq, b.counters, b.indexes, b.rankings, b.expire_at, b.uniques)


def script_call(
    marker: str,
    node: str,
    seq: int,
    counters: dict[str, dict[str, int]],
    indexes: Mapping[str, Iterable[str]],
    rankings: dict[str, dict[str, int]],
    expire_at: dict[str, int],
    uniques: dict[str, list[str]],
) -> tuple[list[str], list[Any]]:
    """(KEYS, ARGV) of the apply script for these tables, behind `marker`."""
    keys = [marker]
    position: dict[str, int] = {}

    def at(key: str) -> int:
        i = position.get(key)
        if i is None:
            keys.append(key)
            i = position[key] = len(keys)
        return i

    args = [
        node,
        seq,
        orjson.dumps([(at(k), f) for k, f in counters.items()]),
        orjson.dumps([(at(k), list(ms)) for k, ms in indexes.items()]),
        orjson.dumps([(at(k), s) for k, s in rankings.items()]),
        orjson.dumps([(at(k), t) for k, t in expire_at.items()]),
        orjson.dumps([(at(k), h) for k, h in uniques.items()]),
    ]
    return keys, args


def to_ints(h: dict[bytes, bytes]) -> dict[str, int]:
    return {f.decode(): int(v) for f, v in h.items()}


def lex_range(prefix: str, after: str) -> tuple[str, str]:
    """ZRANGEBYLEX bounds: members starting with `prefix`, greater than `after`."""
    low = "[" + prefix if prefix else "-"
    if after and after >= prefix:
        low = "(" + after
    # U+FFFF encodes as EF BF BF: above every byte of our (ASCII, escaped) members.
    high = "(" + prefix + "\uffff" if prefix else "+"
    return low, high


class RedisCommands:
    """What a single Redis and a Redis Cluster answer alike: one key per command."""

    _r: Any  # redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster

    async def members(self, key: str, prefix: str, after: str, limit: int) -> list[str]:
        low, high = lex_range(prefix, after)
        try:
            found = await self._r.zrangebylex(key, low, high, start=0, num=limit)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return [m.decode() if isinstance(m, bytes) else m for m in found]

    async def unique(self, key: str) -> int:
        try:
            return int(await self._r.pfcount(key))
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def top(self, key: str, limit: int) -> list[tuple[str, int]]:
        try:
            found = cast(
                list[tuple[bytes, float]],
                await self._r.zrevrange(key, 0, limit - 1, withscores=True),
            )
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return sorted(((m.decode(), int(s)) for m, s in found), key=lambda ms: (-ms[1], ms[0]))

    async def prune(self, now: int) -> int:
        # Redis expires keys itself (EXPIREAT in every batch).
        return 0

    async def ping(self) -> None:
        try:
            await self._r.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def close(self) -> None:
        await self._r.aclose()


class RedisStore(RedisCommands):
    @staticmethod
    def check_url(url: str) -> None:
        """Raise ValueError unless redis-py takes `url` as it is meant."""
        parse_url(url)  # the port, and options such as ?socket_timeout=
        # redis-py drops a database that is not a number: say so instead.
        db = urlsplit(url).path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database {db!r} is not a number")

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self.url = url
        self.batches = f"{key_prefix}tallyd:batches"
        self._r: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        self._apply = self._r.register_script(APPLY)

    async def open(self) -> None:
        await self.ping()

    async def apply(self, batch: Batch) -> bool:
        if batch.encoded is None:
            batch.encoded = script_call(self.batches, *tables(batch))
        keys, args = batch.encoded
        try:
            applied = await self._apply(keys=keys, args=args)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return bool(applied)

    async def read(self, keys: Sequence[str], node: str) -> Snapshot:
        try:
            # MULTI/EXEC: the hashes and the batch marker come from one moment.
            async with self._r.pipeline(transaction=True) as p:
                p.hget(self.batches, node)
                for k in keys:
                    p.hgetall(k)
                seq, *hashes = await p.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return Snapshot([to_ints(h) for h in hashes], int(seq or 0))
