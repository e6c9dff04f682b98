"""Expanding fine-grained cells into one store batch (SPEC §2, §3 design note).

Ingest only counts (account, event, minute, breakdown value) cells; this is
where each distinct cell becomes its five period counters, the `all` rollup and,
for an account `owner/name`, the owner's rollup `owner/*`, the funnels, the
indexes and the rankings — once per flush, not per event.
"""

from __future__ import annotations

import time
from datetime import datetime

from tallyd.events import Cell
from tallyd.keys import ROLLUP, KeySpace, escape
from tallyd.pace import TURN
from tallyd.periods import Clock
from tallyd.retention import Retention, kept
from tallyd.rules import prefix_rollup
from tallyd.stores.base import Batch

MEMORY = 1_000_000
# Hours whose keys are kept: each holds seven key strings (~1 KB), so this bounds
# them to ~10 MB; past it they are forgotten together and built again as needed.
HOURS_KEPT = 10_000
# A build checks the clock every YIELD_EVERY cells and lets the event loop's thread
# take the GIL once it has held it HOLD_SECONDS (see `_yield_if_held`). A new
# account's first cell costs ~12 µs (its keys are worked out), so 64 cells between
# looks and a 2 ms hold let a flood of new accounts stall every request by 2-4 ms.
YIELD_EVERY = 8
YIELD_SECONDS = 0.00005
HOLD_SECONDS = TURN


# (year, month, day, hour, escaped account, escaped event, the five counter keys
# from all time down to the hour, the day's and the month's ranking keys, the day and
# hour keys' expiries or 0)
_HourKeys = tuple[str, str, str, str, str, str, str, str, str, str, str, str, str, int, int]


class Expander:
    def __init__(self, keys: KeySpace, clock: Clock, retention: Retention) -> None:
        self.keys = keys
        self.clock = clock
        self.retention = retention
        # Remembered across batches (builds run one at a time): escaped names, the
        # keys of each (account, event, hour) with its expiries, and the (account,
        # event) pairs whose index entries are in a batch already. Writing those
        # again changes nothing, and was a third of the rows of a busy flush (1,000
        # badges viewed). Forgetting is always safe: the next batch writes them again.
        self._names: dict[str, str] = {}
        # Account → its owner's rollup (`owner/*`), or None.
        self._owners: dict[str, str | None] = {}
        self._indexed: set[tuple[str, str]] = set()
        self._hours: dict[tuple[str | None, str, int], _HourKeys] = {}
        self._minutes: dict[int, tuple[tuple[str, ...], str, int]] = {}
        self._day_starts: dict[tuple[str, ...], int] = {}

    def _forget_if_large(self) -> None:
        for memory in (self._names, self._owners, self._indexed, self._minutes):
            if len(memory) > MEMORY:
                memory.clear()
        if len(self._hours) > HOURS_KEPT:
            self._hours.clear()

    def _hour_of(self, minute: int) -> tuple[tuple[str, ...], str, int]:
        """(year, month, day, hour) parts, the minute's field, and the local hour's
        first epoch minute: cells are grouped by it."""
        at = self._minutes.get(minute)
        if at is None:
            y, m, d, h, mi = self.clock.parts(minute)
            at = self._minutes[minute] = ((y, m, d, h), mi, minute - int(mi))
        return at

    def coarse_minute(self, minute: int) -> int:
        """The minute to count an event of `minute` at, so that every hash still kept
        gets the same counts: the first minute of its local day when its day's hash
        (fields: hours) is past retention, of its local hour when only its hour's
        hash (fields: minutes) is; else `minute`. Replayed history then makes one
        cell an hour or a day, not one a minute. What is past retention stays so."""
        now = time.time()
        tz = self.clock.tz
        parts, _, hour = self._hour_of(minute)
        if kept(self.retention.expires_at(tz, parts), now):
            return minute
        day = parts[:3]
        if kept(self.retention.expires_at(tz, day), now):
            return hour
        # Local midnight (where a DST change skips it, the day's first hour instead).
        start = self._day_starts.get(day)
        if start is None:
            midnight = datetime(int(day[0]), int(day[1]), int(day[2]), tzinfo=tz)
            start = int(midnight.timestamp() // 60)
            if self._hour_of(start)[0][:3] != day:
                start = hour
            if len(self._day_starts) > MEMORY:
                self._day_starts.clear()
            self._day_starts[day] = start
        return start

    def build(self, node: str, seq: int, cells: dict[Cell, int]) -> Batch:
        """Every store write for these cells, merged per (key, field).

        Cells are first summed per local hour, per account and for the rollups, so the
        keys, expiries, indexes and rankings of an hour are worked out once however
        many of its minutes have events.
        """
        # (account, event, value, hour) → minute field → count; account None: `all`.
        # An owner's rollup (`owner/*`) is an account of its own, neither indexed nor
        # ranked (like `all`): no producer can send such a name (tallyd.rules).
        hours: dict[tuple[str | None, str, str | None, int], dict[str, int]] = {}
        parts_of: dict[int, tuple[str, ...]] = {}
        owners = self._owners
        rollups: set[str] = set()
        held_since = time.perf_counter()
        for done, ((account, event, minute, bval), n) in enumerate(cells.items(), 1):
            if done % YIELD_EVERY == 0:
                held_since = _yield_if_held(held_since)
            parts, mi, hour = self._hour_of(minute)
            parts_of[hour] = parts
            if account in owners:
                owner = owners[account]
            else:
                owner = owners[account] = prefix_rollup(account)
            groups: tuple[tuple[str | None, str, str | None, int], ...]
            if owner is None:
                groups = ((account, event, bval, hour), (None, event, bval, hour))
            else:
                rollups.add(owner)
                groups = (
                    (account, event, bval, hour),
                    (None, event, bval, hour),
                    (owner, event, bval, hour),
                )
            for group in groups:
                minutes = hours.get(group)
                if minutes is None:
                    hours[group] = {mi: n}
                else:
                    minutes[mi] = minutes.get(mi, 0) + n

        counters: dict[str, dict[str, int]] = {}
        expire: dict[str, int] = {}
        indexes: dict[str, set[str]] = {self.keys.events: set()}
        rankings: dict[str, dict[str, int]] = {}
        # A day or hour hash past its retention is not written (tallyd.retention):
        # its events count in the periods above it only. An expiry therefore only
        # goes with a key that is kept, once per key remembered in `_hours`.
        now = self.clock.now().timestamp()

        def inc(key: str, field: str, n: int) -> None:
            h = counters.get(key)
            if h is None:
                counters[key] = {field: n}
            else:
                h[field] = h.get(field, 0) + n

        for done, ((who, event, bval, hour), minutes) in enumerate(hours.items(), 1):
            if done % YIELD_EVERY == 0:
                held_since = _yield_if_held(held_since)
            listed = who is not None and who not in rollups
            hk = self._hours.get((who, event, hour))
            fresh = hk is None
            if hk is None:
                hk = self._hour_keys(who, event, hour, parts_of[hour], indexes, listed)
            y, m, d, h, ea, ee = hk[:6]
            base, year_key, month_key, day_key, hour_key, top_day, top_month = hk[6:13]
            day_at, hour_at = hk[13:]
            n = sum(minutes.values())
            inc(base, y, n)
            inc(year_key, m, n)
            inc(month_key, d, n)
            if kept(day_at, now):
                inc(day_key, h, n)
                if day_at and fresh:
                    expire[day_key] = day_at
            if kept(hour_at, now):
                fields = counters.get(hour_key)
                if fields is None:
                    counters[hour_key] = minutes
                else:
                    for mi, k in minutes.items():
                        fields[mi] = fields.get(mi, 0) + k
                if hour_at and fresh:
                    expire[hour_key] = hour_at
            if bval is not None:
                inc(self.keys.funnel(ea, ee, (y,)), bval, n)
                inc(self.keys.funnel(ea, ee, (y, m)), bval, n)
            if not listed:
                continue
            for rkey in (top_day, top_month):
                r = rankings.get(rkey)
                if r is None:
                    rankings[rkey] = {ea: n}
                else:
                    r[ea] = r.get(ea, 0) + n
        self._forget_if_large()

        return Batch(node, seq, counters, indexes, rankings, expire, cells=len(cells))

    def _hour_keys(
        self,
        account: str | None,
        event: str,
        hour: int,
        parts: tuple[str, ...],
        indexes: dict[str, set[str]],
        listed: bool,
    ) -> _HourKeys:
        """The keys and expiries of an account's (None: `all`'s) event in an hour,
        remembered; the first time, a listed account's index entries go into `indexes`."""
        keys = self.keys
        ea = ROLLUP if account is None else self._escape(account)
        ee = self._escape(event)
        y, m, d, h = parts
        base = keys.counter(ea, ee)
        day_key = f"{base}/{y}/{m}/{d}"
        tz = self.clock.tz
        hk = self._hours[account, event, hour] = (
            y,
            m,
            d,
            h,
            ea,
            ee,
            base,
            f"{base}/{y}",
            f"{base}/{y}/{m}",
            day_key,
            f"{day_key}/{h}",
            keys.ranking(ee, (y, m, d)),
            keys.ranking(ee, (y, m)),
            self.retention.expires_at(tz, (y, m, d)),
            self.retention.expires_at(tz, parts),
        )
        if listed and (ea, ee) not in self._indexed:
            # The pair holds the escaped names themselves (shared with `_names`): with
            # 100,000 accounts, keeping the index keys instead took 24 MB more.
            self._indexed.add((ea, ee))
            indexes[keys.events].add(ee)
            indexes.setdefault(keys.accounts(ee), set()).add(ea)
            indexes.setdefault(keys.account_events(ea), set()).add(ee)
        return hk

    def _escape(self, name: str) -> str:
        e = self._names.get(name)
        if e is None:
            e = escape(name)
            # Most names need no escaping: keep one string, not two equal ones.
            self._names[name] = e = name if e == name else e
        return e


def _yield_if_held(since: float) -> float:
    """Let the event loop's thread run when this one has held the GIL too long."""
    if time.perf_counter() - since <= HOLD_SECONDS:
        return since
    # Builds run in a thread, but compiled code keeps the GIL until it returns:
    # 1,000 cells held the event loop for 12-15 ms. A real sleep, however short,
    # lets the waiting loop thread take the GIL; sleep(0) gave it back before that
    # thread was scheduled.
    time.sleep(YIELD_SECONDS)
    return time.perf_counter()
