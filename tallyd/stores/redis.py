"""The Redis store: the first seed's layout, readable with `redis-cli`.

Counters are hashes (`HINCRBY`), indexes are sorted sets with every score 0 so
they page in name order (`ZRANGEBYLEX`), rankings are sorted sets by count
(`ZINCRBY`), retention is `EXPIREAT`. A batch is applied by one Lua script,
which first checks and then records the node's last batch number in
`tallyd:batches`: Redis runs a script atomically, so a batch retried after a
timeout or a reconnect is applied exactly once.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url
from redis.exceptions import RedisError

from tallyd import hll
from tallyd.stores import hll_codec
from tallyd.stores.base import Batch, Contents, Edit, Snapshot, StoreError


def _batch_script(before: str, inc: str, rank: str, sketches: str) -> str:
    """A script that writes a batch's tables behind its marker: KEYS[1] the
    marker, ARGV[1..2] the (node, seq) it records; `inc` and `rank` how a
    counter and a ranking score are written, `sketches` how ARGV[7] is."""
    return f"""
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if last >= tonumber(ARGV[2]) then return 0 end
{before}for _, e in ipairs(cjson.decode(ARGV[3])) do
  local key = KEYS[e[1]]
  for field, n in pairs(e[2]) do {inc} end
end
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local key = KEYS[e[1]]
  for _, member in ipairs(e[2]) do redis.call('ZADD', key, 0, member) end
end
for _, e in ipairs(cjson.decode(ARGV[5])) do
  local key = KEYS[e[1]]
  for member, n in pairs(e[2]) do {rank} end
end
for _, e in ipairs(cjson.decode(ARGV[7])) do
{sketches}
end
for _, e in ipairs(cjson.decode(ARGV[6])) do redis.call('EXPIREAT', KEYS[e[1]], e[2]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


# KEYS: the batch marker, then every key the batch touches (Redis's scripting
# contract: a script names its keys in KEYS, so a cluster, a proxy or a managed
# Redis can tell where it runs). ARGV: node, seq, then counters, indexes,
# rankings, expiries and HyperLogLog additions as JSON documents of
# [position in KEYS, data] pairs. One JSON argument per table instead of three
# arguments per cell: encoding hundreds of thousands of arguments was most of a
# flush's time, client-side.
APPLY = _batch_script(
    "",
    "redis.call('HINCRBY', key, field, n)",
    "redis.call('ZINCRBY', key, n, member)",
    """  local key, hashes = KEYS[e[1]], e[2]
  for i = 1, #hashes, 500 do
    redis.call('PFADD', key, unpack(hashes, i, math.min(i + 499, #hashes)))
  end""",
)


# An import's part (tallyd.transfer): the apply script's tables, written as
# increments (ARGV[8] "add") or as absolute values ("set"), behind a marker of
# the import's run. Sketches: ARGV[7] pairs a key's position in KEYS with the
# position in ARGV of its registers in Redis's own encoding; "add" merges them
# into the key's (PFMERGE, through the scratch key KEYS[#KEYS], which is in the
# same slot), "set" puts them in its place.
# Redis does not undo a script's writes when a command in it fails: every key
# is checked first, so a key of another type (data that is not tallyd's) fails
# the part before anything of it is written; so is, for "add", each field a
# count is added to that holds no count of tallyd's (a whole number 0..2^53 - 1
# written as Redis writes it): HINCRBY fails on `abc` and `05`, and a part half
# written would count twice once resumed.
WRITE_CHECK = """local function check(doc, wanted, sketch)
  for _, e in ipairs(cjson.decode(doc)) do
    local key = KEYS[e[1]]
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and (kind ~= wanted or
        (sketch and redis.call('GETRANGE', key, 0, 3) ~= 'HYLL')) then
      return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. kind ..
        ' that is not tallyd\\'s: nothing of this part was written')
    end
  end
end
local failed = check(ARGV[3], 'hash') or check(ARGV[4], 'zset') or check(ARGV[5], 'zset')
  or check(ARGV[7], 'string', true)
if failed then return failed end
local add, scratch = ARGV[8] == 'add', KEYS[#KEYS]
if add then
  for _, e in ipairs(cjson.decode(ARGV[3])) do
    local key = KEYS[e[1]]
    for field, _ in pairs(e[2]) do
      local v = redis.call('HGET', key, field)
      if v and v ~= '0' and not (string.match(v, '^[1-9]%d*$') and #v <= 16
          and tonumber(v) <= 9007199254740991) then
        return redis.error_reply('WRONGTYPE ' .. key .. ' field ' .. field ..
          ' holds no count of tallyd\\'s: nothing of this part was written')
      end
    end
  end
end
"""
WRITE = _batch_script(
    WRITE_CHECK,
    "if add then redis.call('HINCRBY', key, field, n) else redis.call('HSET', key, field, n) end",
    "if add then redis.call('ZINCRBY', key, n, member) else redis.call('ZADD', key, n, member) end",
    """  local key, sketch = KEYS[e[1]], ARGV[e[2][1]]
  if add and redis.call('EXISTS', key) == 1 then
    redis.call('SET', scratch, sketch)
    redis.call('PFMERGE', key, scratch)
    redis.call('DEL', scratch)
  else
    redis.call('SET', key, sketch, 'KEEPTTL')
  end""",
)
# A page of an export, on one server: each key's type, value and expiry, in one
# call instead of three commands a key (redis-py's cost per command was most of
# an export's time). Sorted sets come back flat, member then score.
DUMP = """
local out = {}
for i, key in ipairs(KEYS) do
  local kind, value = redis.call('TYPE', key)['ok'], false
  if kind == 'hash' then value = redis.call('HGETALL', key)
  elseif kind == 'zset' then value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'string' then value = redis.call('GET', key) end
  out[i] = {kind, value, redis.call('EXPIRETIME', key)}
end
return out
"""
KINDS = ("hash", "zset", "string")
# ARGV position of the first sketch's bytes in WRITE.
FIRST_SKETCH = 9
# Keys a SCAN call asks for at a time, during an export.
SCAN_COUNT = 1000


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
    uniques: Mapping[str, Sequence[object]],
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


def write_call(
    marker: str,
    scratch: str,
    run: str,
    seq: int,
    mode: str,
    part: Contents,
) -> tuple[list[str], list[Any]]:
    """(KEYS, ARGV) of the write script for an import's part."""
    refs = {k: [FIRST_SKETCH + i] for i, k in enumerate(part.registers)}
    keys, args = script_call(
        marker, run, seq, part.counters, part.indexes, part.rankings, part.expire_at, refs
    )
    keys.append(scratch)
    sketches = [hll_codec.to_redis(hll.load(b)) for b in part.registers.values()]
    return keys, [*args, mode, *sketches]


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

    # -- export and import (tallyd.transfer) -----------------------------------

    ledger: str  # the hash of imports done: fingerprint → JSON

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run `fn`, any Redis error made a StoreError."""
        try:
            return await fn()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def _targets(self) -> list[Any]:
        """What to SCAN one after the other: the server (None), or each master."""
        return [None]

    async def _scan_page(self, target: Any, cursor: int) -> tuple[int, list[bytes]]:
        cursor, keys = await self._r.scan(cursor, count=SCAN_COUNT)
        return int(cursor), keys

    async def _dbsize(self, target: Any) -> int:
        return int(await self._r.dbsize())

    def _pipeline(self) -> Any:
        return self._r.pipeline(transaction=False)

    async def size(self) -> int:
        total = 0
        for target in await self._call(self._targets):
            total += await self._call(partial(self._dbsize, target))
        return total

    async def scan(self, wanted: Callable[[str], bool]) -> AsyncIterator[Contents]:
        # SCAN returns every key that exists for the whole scan at least once; a key
        # comes back twice only if Redis shrinks its table meanwhile (most keys
        # deleted during the export).
        for target in await self._call(self._targets):
            cursor = 0
            while True:
                cursor, found = await self._call(partial(self._scan_page, target, cursor))
                names = [k for k in (n.decode() for n in found) if wanted(k)]
                part: Contents = await self._call(partial(self._fetch, names))
                part.scanned = len(found)
                yield part
                if cursor == 0:
                    break

    async def _read_keys(self, names: list[str]) -> list[tuple[str, Any, int]]:
        """(type, value, expiry or -1) of each key, in two pipelined round trips."""
        async with self._pipeline() as p:
            for k in names:
                p.type(k)
            kinds = [t.decode() if isinstance(t, bytes) else t for t in await p.execute()]
        read = [(k, t) for k, t in zip(names, kinds, strict=True) if t in KINDS]
        async with self._pipeline() as p:
            for k, t in read:
                if t == "hash":
                    p.hgetall(k)
                elif t == "zset":
                    p.zrange(k, 0, -1, withscores=True)
                else:
                    p.get(k)
                p.expiretime(k)
            values = await p.execute()
        pairs = zip(read, values[::2], values[1::2], strict=True)
        found = {k: (t, v, int(at)) for (k, t), v, at in pairs}
        return [found.get(k, ("none", None, -1)) for k in names]

    async def _fetch(self, names: list[str]) -> Contents:
        """The contents of these keys: hashes, sorted sets (in `rankings`), sketches."""
        part = Contents()
        if not names:
            return part
        for k, (t, value, at) in zip(names, await self._read_keys(names), strict=True):
            if not value:  # gone since it was listed, or of another type
                continue
            if t == "hash":
                part.counters[k] = to_ints(value)
            elif t == "zset":
                part.rankings[k] = {m.decode(): int(s) for m, s in value}
            else:
                try:
                    part.registers[k] = hll.dump(hll_codec.from_redis(value))
                except hll_codec.NotASketch:
                    continue  # a string that is no sketch: not tallyd's
            if at > 0:
                part.expire_at[k] = at
        return part

    async def imported(self, fingerprint: str) -> dict[str, Any] | None:
        entry = await self._call(lambda: self._r.hget(self.ledger, fingerprint))
        return orjson.loads(entry) if entry else None

    async def remember_import(self, fingerprint: str, entry: dict[str, Any]) -> None:
        await self._call(lambda: self._r.hset(self.ledger, fingerprint, orjson.dumps(entry)))

    async def prune(self, now: int) -> int:
        # Redis expires keys itself (EXPIREAT in every batch).
        return 0

    def _atomic(self) -> Any:
        """A pipeline applied at once (MULTI/EXEC); on a cluster, key by key."""
        return self._r.pipeline(transaction=True)

    async def edit(self, change: Edit) -> None:
        async def run() -> None:
            async with self._atomic() as p:
                for key in change.drop:
                    p.delete(key)
                for key, member in change.members:
                    p.zrem(key, member)
                for key, member in change.listed:
                    p.zadd(key, {member: 0})
                for key, values in change.fields.items():
                    for name, value in values.items():
                        if value:
                            p.hset(key, name, value)
                        else:
                            p.hdel(key, name)
                await p.execute()

        await self._call(run)

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
        # The port, and the values of redis-py's typed options (?socket_timeout=5).
        options = parse_url(url)
        # redis-py hands every other option to the connection as it connects, where
        # one it does not know is a TypeError: refuse it now, by name.
        conn = options.pop("connection_class", aioredis.Connection)
        takes = {
            name
            for cls in (*conn.__mro__, aioredis.ConnectionPool)
            if "__init__" in vars(cls)
            for name in inspect.signature(vars(cls)["__init__"]).parameters
        }
        text = {"client_name", "ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile"}
        known = sorted(takes & (URL_QUERY_ARGUMENT_PARSERS.keys() | text))
        for name in parse_qs(urlsplit(url).query, keep_blank_values=True):
            if name not in known:
                raise ValueError(f"unknown option {name!r} (options: {', '.join(known)})")
        # redis-py drops a database that is not a number: say so instead.
        db = urlsplit(url).path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database {db!r} is not a number")

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self.url = url
        self.batches = f"{key_prefix}tallyd:batches"
        self.ledger = f"{key_prefix}tallyd:imports"
        self.runs = f"{key_prefix}tallyd:import-runs"
        self.scratch = f"{key_prefix}tallyd:scratch"
        self._r: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        self._apply = self._r.register_script(APPLY)
        self._write = self._r.register_script(WRITE)
        self._dump = self._r.register_script(DUMP)

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

    async def write(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        keys, args = write_call(self.runs, self.scratch, run, seq, mode, part)
        written = await self._call(lambda: self._write(keys=keys, args=args))
        return bool(written)

    async def _read_keys(self, names: list[str]) -> list[tuple[str, Any, int]]:
        out = []
        for kind, value, at in await self._dump(keys=names):
            kind = kind.decode()
            if kind == "hash":
                value = dict(zip(value[::2], value[1::2], strict=True))
            elif kind == "zset":
                value = list(zip(value[::2], (float(s) for s in value[1::2]), strict=True))
            out.append((kind, value, int(at)))
        return out

    async def forget_run(self, run: str) -> None:
        await self._call(lambda: self._r.hdel(self.runs, run))
