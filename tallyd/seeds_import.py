"""`tallyd import --from-redis URL --layout ghit|bootic-go`: the seeds' Redis data
as tallyd's counts (docs/export-import.md).

Neither seed kept tallyd's finest grain, so each count becomes events at the
start of the finest period the seed knew it for — an hour of the first seed's
day hashes, a day of ghit's — and goes through tallyd's own expansion
(`Expander.build`): the five periods, the `all` and `owner/*` rollups, indexes,
rankings and retention come out exactly as if tallyd had counted those events.
The seeds' own `all` keys are therefore not imported but compared with the sum
of their accounts.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from tallyd.events import Cell, Rejected, check_name
from tallyd.expand import Expander
from tallyd.keys import ROLLUP, KeySpace
from tallyd.periods import Clock
from tallyd.progress import Progress
from tallyd.records import MOST
from tallyd.retention import Retention
from tallyd.rules import reserved
from tallyd.stores import redact
from tallyd.stores.base import Contents, Transferable
from tallyd.stores.redis import RedisStore
from tallyd.transfer import Writer, begin, write_all

LAYOUTS = ("ghit", "bootic-go")
# Distinct cells expanded and written as one part.
PART_CELLS = 20_000
SCAN_COUNT = 1000
DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# A count as Redis's INCR wrote it; longer ones are past MOST anyway.
COUNT = re.compile(r"[0-9]{1,16}")


class SeedError(Exception):
    """The seed's Redis could not be read; the message says which and why."""


@dataclass
class Report:
    """What an import from a seed found, for its summary."""

    events: int = 0
    accounts: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, why: str, n: int = 1) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + n

    def lines(self) -> list[str]:
        out = [f"{n:,} {why}" for why, n in sorted(self.skipped.items())]
        return [*self.notes, *(f"skipped: {line}" for line in out)]


class Sink:
    """Cells from a seed, expanded as tallyd expands its own and written in parts."""

    def __init__(self, expander: Expander, writer: Writer, report: Report) -> None:
        self.expander = expander
        self.writer = writer
        self.report = report
        self.cells: dict[Cell, int] = {}
        # Breakdown counts of events counted from other cells: funnels alone.
        self.breakdowns: dict[Cell, int] = {}

    def add(
        self, account: str, event: str, minute: int, value: str | None, n: int, alone: bool = False
    ) -> None:
        """Count `n` events, or only their breakdown by `value` (`alone`) when the
        events themselves are counted by other cells."""
        if n <= 0 or (alone and not value):
            return
        cell = (account, event, minute, value or None)
        cells = self.breakdowns if alone else self.cells
        cells[cell] = cells.get(cell, 0) + n
        if cells is self.cells:
            self.report.events += n
        self.report.accounts.add(account)

    async def flush(self, full: bool = True) -> None:
        """Write the cells held, if there are many (`full`) or any at all."""
        held = len(self.cells) + len(self.breakdowns)
        if not held or (full and held < PART_CELLS):
            return
        b = self.expander.build(self.writer.run, self.writer.seq + 1, self.cells)
        part = Contents(b.counters, b.indexes, b.rankings, {}, b.expire_at)
        if self.breakdowns:
            only = self.expander.build(self.writer.run, self.writer.seq + 1, self.breakdowns)
            funnels = self.expander.keys.prefix + "funnels:"
            for key, fields in only.counters.items():
                if key.startswith(funnels):
                    into = part.counters.setdefault(key, {})
                    for f, n in fields.items():
                        into[f] = into.get(f, 0) + n
            for key, members in only.indexes.items():
                part.indexes.setdefault(key, set()).update(members)
        self.cells, self.breakdowns = {}, {}
        for key, fields in part.counters.items():
            for f, n in fields.items():
                if n > MOST:
                    raise SeedError(
                        f"{key} field {f} would hold {n:,}, more than 2^53 - 1, the largest "
                        "count tallyd imports and exports"
                    )
        await self.writer.write(part, 0)


def _name(text: str, report: Report, what: str) -> str | None:
    """A seed's account or event name if tallyd takes it, else None (and noted)."""
    try:
        name = check_name(text, what)
    except Rejected as exc:
        report.skip(f"keys with a bad {what} ({exc.reason})")
        return None
    if what == "account" and reserved(name):
        report.skip("keys of an account named like a rollup (all, owner/*)")
        return None
    return name


def _count(value: object) -> int | None:
    """A seed's count (or day or hour field) as tallyd takes it: 0 to MOST, else None."""
    text = str(value)
    return int(text) if COUNT.fullmatch(text) and int(text) <= MOST else None


class Seed:
    """One seed's Redis, read page by page."""

    def __init__(self, url: str, clock: Clock, sink: Sink, progress: Progress) -> None:
        self.url = url
        self.r: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5
        )
        self.clock = clock
        self.sink = sink
        self.report = sink.report
        self.progress = progress

    def minute(self, y: int, m: int, d: int, h: int) -> int | None:
        """The epoch minute a local hour starts at, or None if there is no such hour."""
        try:
            return int(datetime(y, m, d, h, tzinfo=self.clock.tz).timestamp()) // 60
        except ValueError:
            return None

    async def keys(self, pattern: str) -> AsyncIterator[list[str]]:
        """Pages of the keys matching `pattern`, each page's cells written after it."""
        cursor = 0
        while True:
            cursor, found = await self.r.scan(cursor, match=pattern, count=SCAN_COUNT)
            self.progress.advance(len(found))
            if found:
                yield [k.decode() if isinstance(k, bytes) else k for k in found]
                await self.sink.flush()
            if cursor == 0:
                return

    async def values(self, keys: list[str], command: str) -> list[Any]:
        """Each key's value by `command` (GET, HGETALL) in one round trip; None
        for a key of another type, skipped and counted under its head (`repo:`...)."""
        async with self.r.pipeline(transaction=False) as p:
            for k in keys:
                p.execute_command(command, k)
            found = await p.execute(raise_on_error=False)
        for i, (key, value) in enumerate(zip(keys, found, strict=True)):
            if isinstance(value, ResponseError):
                if not str(value).startswith("WRONGTYPE"):
                    raise value
                self.report.skip(f"{key.split(':')[0]}: keys of another type than the seed's")
                found[i] = None
        return list(found)


async def ghit(seed: Seed, event: str) -> None:
    """ghit.me's counters: `repo:<id>` (total) and `repo:<YYYY-MM-DD>:<id>` (a day),
    ids as nginx escaped them. A day's hits count at its first minute; hits of a
    total that no day holds, at the id's first day (or the source's)."""
    report, sink = seed.report, seed.sink
    totals: dict[str, int] = {}
    dated: dict[str, tuple[int, int]] = {}  # account → (hits in its days, first day's minute)
    async for keys in seed.keys("repo:*"):
        for key, value in zip(keys, await seed.values(keys, "GET"), strict=True):
            n = None if value is None else _count(value)
            if n is None:
                if value is not None:
                    report.skip("repo: keys that hold no count")
                continue
            rest = key[len("repo:") :]
            day = DATE.fullmatch(rest[:10]) if rest[10:11] == ":" else None
            account = _name(unquote(rest[11:] if day else rest), report, "account")
            if account is None:
                continue
            if day is None:
                totals[account] = totals.get(account, 0) + n
                continue
            y, m, d = (int(p) for p in day.groups())
            minute = seed.minute(y, m, d, 0)
            if minute is None:
                report.skip("repo: keys of a day that is no date")
                continue
            sink.add(account, event, minute, None, n)
            hits, first = dated.get(account, (0, minute))
            dated[account] = (hits + n, min(first, minute))
    earliest = min((first for _, first in dated.values()), default=None)
    if earliest is None:
        earliest = int(seed.clock.now().replace(hour=0, minute=0).timestamp()) // 60
    undated = short = 0
    for account, total in totals.items():
        hits, first = dated.get(account, (0, earliest))
        if total > hits:
            sink.add(account, event, first, None, total - hits)
            undated += total - hits
        elif total < hits:
            short += 1
    if undated:
        report.notes.append(
            f"{undated:,} hits in totals but in no day's counter were counted at each "
            "id's first day (or the first day of all, for an id with none)"
        )
    if short:
        report.notes.append(
            f"{short:,} ids whose days hold more hits than their total: their days counted"
        )
    await sink.flush(full=False)


def _go_key(key: str) -> tuple[str, str, list[int]] | None:
    """`track:<account>:<event>:<Y>[:<M>[:<D>]]` (or `funnels:...`): the account,
    the event and the period's numbers, as the Go seed wrote them (unpadded)."""
    parts = key.split(":")[1:]
    numbers: list[int] = []
    while parts and parts[-1].isdigit() and len(numbers) < 3:
        numbers.insert(0, int(parts.pop()))
    if not numbers or len(parts) < 2:
        return None
    return ":".join(parts[:-1]), parts[-1], numbers


async def _go_years(seed: Seed, head: str) -> AsyncIterator[tuple[str, str, int, str]]:
    """(account, event, year, key) of each year hash under `head` (`track`, `funnels`)."""
    async for keys in seed.keys(f"{head}:*"):
        for key in keys:
            found = _go_key(key)
            if found is None:
                seed.report.skip(f"{head}: keys not in the seed's layout")
            elif len(found[2]) == 1:
                yield found[0], found[1], found[2][0], key


async def bootic_go(seed: Seed, event: str) -> None:
    """The first seed's Go aggregator: `track:<account>:<event>:<Y>` (months),
    `...:<M>` (days), `...:<M>:<D>` (hours, kept a month); `funnels:<account>:
    <event>:<Y>[:<M>]` (status → count). Each count at the start of its finest
    known period; what a coarser hash holds beyond its finer ones, at the start
    of the coarser period."""
    del event  # the seed's keys name their events
    report, sink = seed.report, seed.sink
    seed_all: dict[tuple[str, int], int] = {}
    ours: dict[tuple[str, int], int] = {}
    tracked: set[tuple[str, str]] = set()
    both = 0
    async for account, ev, y, key in _go_years(seed, "track"):
        months = await _go_hashes(seed, key)
        if months is None:
            continue
        if account == ROLLUP:
            seed_all[ev, y] = sum(_count(n) or 0 for n in months[0].values())
            continue
        name, evname = _name(account, report, "account"), _name(ev, report, "event")
        if name is None or evname is None:
            continue
        tracked.add((name, evname))
        before = report.events
        await _go_track(seed, name, evname, y, key, months)
        ours[ev, y] = ours.get((ev, y), 0) + report.events - before
    async for account, ev, y, key in _go_years(seed, "funnels"):
        if account == ROLLUP:
            continue
        name, evname = _name(account, report, "account"), _name(ev, report, "event")
        if name is None or evname is None:
            continue
        months = await _go_hashes(seed, key)
        if months is None:
            continue
        alone = (name, evname) in tracked
        if alone:
            both += sum(1 for h in months if h)
        _go_funnel(seed, name, evname, y, months, alone)
    if both:
        report.notes.append(
            f"{both:,} funnels: keys of events also under track: were imported as funnels "
            "alone: their orders are counted in track once, from track:"
        )
    await sink.flush(full=False)
    differ = sorted(k for k in seed_all if seed_all[k] != ours.get(k, 0))
    if differ:
        shown = ", ".join(
            f"{e} {y}: {seed_all[e, y]:,} vs {ours.get((e, y), 0):,}" for e, y in differ[:5]
        )
        report.notes.append(
            f"the seed's own `all` differs from the sum of its accounts in {len(differ)} "
            f"event-years ({shown}); tallyd's `all` is the sum"
        )
    elif seed_all:
        report.notes.append(
            f"the seed's own `all` matches the sum of its accounts ({len(seed_all)} event-years)"
        )


async def _go_hashes(seed: Seed, key: str) -> list[dict[str, str]] | None:
    """A year's hash and its months' (empty if none), or None if the year's key is
    no hash (skipped: its months are not read)."""
    found = await seed.values([key, *(f"{key}:{m}" for m in range(1, 13))], "HGETALL")
    return None if found[0] is None else [h or {} for h in found]


async def _go_track(
    seed: Seed, account: str, event: str, y: int, key: str, months: list[dict[str, str]]
) -> None:
    year, by_month = months[0], months[1:]
    in_year: dict[int, int] = {}
    for mfield, text in year.items():
        m, n = _count(mfield), _count(text)
        if m is None or not 1 <= m <= 12 or n is None:
            seed.report.skip("fields of track: hashes that are no month or count")
            continue
        in_year[m] = n
    day_keys = [
        (m, d, f"{key}:{m}:{d}")
        for m, days in enumerate(by_month, 1)
        for d in (_count(f) for f in days)
        if d is not None
    ]
    hours_of = dict(
        zip(
            ((m, d) for m, d, _ in day_keys),
            [h or {} for h in await seed.values([k for *_, k in day_keys], "HGETALL")],
            strict=True,
        )
    )
    for m, days in enumerate(by_month, 1):
        in_days = 0
        for dfield, text in days.items():
            d, n = _count(dfield), _count(text)
            if d is None or n is None:
                seed.report.skip("fields of track: hashes that are no day or count")
                continue
            in_hours = 0
            for hfield, htext in hours_of.get((m, d), {}).items():
                h, k = _count(hfield), _count(htext)
                minute = seed.minute(y, m, d, h) if h is not None and 0 <= h < 24 else None
                if minute is None or k is None:
                    seed.report.skip("fields of track: hashes that are no hour or count")
                    continue
                seed.sink.add(account, event, minute, None, k)
                in_hours += k
            _rest(seed, account, event, (y, m, d), n - in_hours)
            in_days += max(n, in_hours)
        _rest(seed, account, event, (y, m, 1), in_year.get(m, 0) - in_days)


def _rest(seed: Seed, account: str, event: str, day: tuple[int, int, int], n: int) -> None:
    """What a coarser hash holds beyond its finer ones, at the start of `day`."""
    if n < 0:
        seed.report.skip("counts of finer hashes above their coarser one's (kept)")
        return
    minute = seed.minute(*day, 0)
    if minute is None:
        seed.report.skip("track: counts of a day that is no date")
        return
    seed.sink.add(account, event, minute, None, n)


def _go_funnel(
    seed: Seed, account: str, event: str, y: int, months: list[dict[str, str]], alone: bool
) -> None:
    """A year's funnels: each status's orders by month, the year's beyond them at
    1 January; counted as events too unless `alone` (track: counts them)."""
    in_months: dict[str, int] = {}
    for m, statuses in enumerate(months[1:], 1):
        for status, text in statuses.items():
            n = _count(text)
            if n is None:
                seed.report.skip("fields of funnels: hashes that hold no count")
                continue
            _funnel_cell(seed, account, event, (y, m), status, n, alone)
            in_months[status] = in_months.get(status, 0) + n
    for status, text in months[0].items():
        n = (_count(text) or 0) - in_months.get(status, 0)
        _funnel_cell(seed, account, event, (y, 1), status, n, alone)


def _funnel_cell(
    seed: Seed, account: str, event: str, month: tuple[int, int], status: str, n: int, alone: bool
) -> None:
    value = _name(status, seed.report, "breakdown value") if status else None
    minute = seed.minute(*month, 1, 0)
    if minute is not None and (value is not None or not status):
        seed.sink.add(account, event, minute, value, n, alone)


FORM = "redis://[:PASSWORD@]HOST[:PORT][/DB]"


def address(url: str) -> tuple[str, int, int]:
    """(host, port, database) of a seed's Redis URL; ValueError, one line, if it is none."""
    parts = urlsplit(url)
    bad = f"--from-redis {redact(url)!r}"
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"{bad} is not a Redis URL: {FORM}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{bad}: its port is no number from 0 to 65535") from None
    db = parts.path[1:]
    if not (db == "" or (db.isascii() and db.isdigit())) or "db" in parse_qs(parts.query):
        raise ValueError(f"{bad}: its database is a number after the port: {FORM}")
    try:
        RedisStore.check_url(url)  # the options redis-py takes, as for --store
    except ValueError as exc:
        raise ValueError(f"{bad}: {exc}") from None
    return parts.hostname, port, int(db or 0)


async def _names(url: str, layout: str) -> tuple[str, tuple[str, ...]]:
    """The fingerprint of a seed, and its other names (aliases) in the ledger.

    A seed is its host's address, port and database, whatever the URL says: the
    host name resolved, every loopback address one (`localhost`, `127.0.0.1`,
    `::1`), no database number the same as 0. That stays true across restarts;
    the Redis server's `run_id` (an alias) catches one server reached at two
    addresses while it runs. The URL as it was written is the name older
    releases used.
    """
    host, port, db = address(url)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ips = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found}
    except (OSError, ValueError):
        ips = set()
    mapped = {ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip for ip in ips}
    if mapped and all(ip.is_loopback for ip in mapped):
        where = "loopback"
    else:
        where = str(min(mapped, key=lambda ip: (ip.version, int(ip)))) if mapped else host.lower()
    return _ledger_name(layout, f"{where}:{port}/{db}"), (_ledger_name(layout, redact(url)),)


def _ledger_name(layout: str, source: str) -> str:
    return "seed:" + hashlib.sha256(f"{layout} {source}".encode()).hexdigest()


async def import_seed(
    store: Transferable,
    store_url: str,
    url: str,
    layout: str,
    event: str,
    keys: KeySpace,
    clock: Clock,
    retention: Retention,
    force: bool,
) -> list[str]:
    """Import a seed's Redis into `store`; the lines to tell the user."""
    where = redact(url)
    what = f"the {layout} layout at {where}"
    fingerprint, aliases = await _names(url, layout)
    report = Report()
    try:
        client = aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        try:
            total = int(await client.dbsize())
            try:
                run_id = (await client.info("server")).get("run_id")
            except ResponseError:  # INFO renamed or disabled, as some hosted Redis do
                run_id = None
        finally:
            await client.aclose()
    except (RedisError, OSError, ValueError) as exc:
        raise SeedError(f"the seed's Redis {where} is not reachable: {exc}") from exc
    running = _ledger_name(layout, f"run {run_id}/{address(url)[2]}") if run_id else None
    aliases = (*aliases, running) if running else aliases
    start = await begin(store, fingerprint, what, "add", force, False, aliases)
    progress = Progress("importing", total, "keys")
    expander = Expander(keys, clock, retention)

    async def parts(writer: Writer) -> int:
        seed = Seed(url, clock, Sink(expander, writer, report), progress)
        try:
            await (ghit if layout == "ghit" else bootic_go)(seed, event)
        except RedisError as exc:
            raise SeedError(f"the seed's Redis {where}: {exc}") from exc
        finally:
            await seed.r.aclose()
        return report.events

    writer = await write_all(store, start, "add", parts, progress)
    if writer.seq and running:
        await store.remember_import(running, await store.imported(fingerprint) or {})
    return [
        *([start.note] if start.note else []),
        *report.lines(),
        f"imported {report.events:,} events of {len(report.accounts):,} accounts from {what} "
        f"into {redact(store_url)} ({progress.done:,} keys read): {writer.describe()}",
    ]
