"""Expanding fine-grained cells into one store batch (SPEC §2, §3 design note).

Ingest only counts (account, event, minute, breakdown value) cells; this is
where each distinct cell becomes its five period counters, the `all` rollup,
the funnels, the indexes and the rankings — once per flush, not per event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tallyd.events import Cell
from tallyd.keys import ROLLUP, KeySpace, escape
from tallyd.periods import Clock
from tallyd.stores.base import Batch

DAY = 86400
MEMORY = 1_000_000
YIELD_EVERY = 64
YIELD_SECONDS = 0.00005
HOLD_SECONDS = 0.002


@dataclass(frozen=True)
class Retention:
    """How long the fine-grained hashes live, in days; 0 keeps them forever."""

    minutes_days: int = 7
    hours_days: int = 400


class Expander:
    def __init__(self, keys: KeySpace, clock: Clock, retention: Retention) -> None:
        self.keys = keys
        self.clock = clock
        self.retention = retention
        # Remembered across batches (builds run one at a time): escaped names, and the
        # index entries and expiries already in a batch. Writing those again changes
        # nothing, and was a third of the rows of a busy flush (1,000 badges viewed).
        # Forgetting is always safe: the next batch just writes them again.
        self._names: dict[str, str] = {}
        self._indexed: set[tuple[str, str]] = set()
        self._expiries: dict[str, int] = {}

    def _forget_if_large(self) -> None:
        for memory in (self._names, self._indexed, self._expiries):
            if len(memory) > MEMORY:
                memory.clear()

    def build(self, node: str, seq: int, cells: dict[Cell, int]) -> Batch:
        """Every store write for these cells, merged per (key, field)."""
        keys, parts_of = self.keys, self.clock.parts
        counters: dict[str, dict[str, int]] = {}
        expire: dict[str, int] = {}
        indexes: dict[str, set[str]] = {keys.events: set()}
        rankings: dict[str, dict[str, int]] = {}
        names = self._names
        indexed = self._indexed
        sent_expiries = self._expiries
        # An expiry in the past deletes the key at once; a later write recreates it,
        # so such expiries are always sent again.
        now = int(time.time())
        # The rollup sums every account: merge before expanding, once per (event, minute, value).
        rollup: dict[tuple[str, int, str | None], int] = {}

        def inc(key: str, field: str, n: int) -> None:
            h = counters.get(key)
            if h is None:
                counters[key] = {field: n}
            else:
                h[field] = h.get(field, 0) + n

        def expand(acc: str, ev: str, minute: int, bval: str | None, n: int) -> None:
            y, m, d, h, mi = parts_of(minute)
            base = keys.counter(acc, ev)
            inc(base, y, n)
            inc(f"{base}/{y}", m, n)
            inc(f"{base}/{y}/{m}", d, n)
            day_key = f"{base}/{y}/{m}/{d}"
            inc(day_key, h, n)
            hour_key = f"{day_key}/{h}"
            inc(hour_key, mi, n)
            # Aligned to the period, so every cell of a key gives the same expiry.
            hour_start = (minute - int(mi)) * 60
            if self.retention.hours_days:
                day_start = hour_start - int(h) * 3600
                at = day_start + DAY + self.retention.hours_days * DAY
                if at <= now or sent_expiries.get(day_key) != at:
                    expire[day_key] = sent_expiries[day_key] = at
            if self.retention.minutes_days:
                at = hour_start + 3600 + self.retention.minutes_days * DAY
                if at <= now or sent_expiries.get(hour_key) != at:
                    expire[hour_key] = sent_expiries[hour_key] = at
            if bval is not None:
                inc(keys.funnel(acc, ev, (y,)), bval, n)
                inc(keys.funnel(acc, ev, (y, m)), bval, n)

        def esc(name: str) -> str:
            e = names.get(name)
            if e is None:
                e = names[name] = escape(name)
            return e

        held_since = time.perf_counter()
        for done, ((account, event, minute, bval), n) in enumerate(cells.items(), 1):
            if done % YIELD_EVERY == 0 and time.perf_counter() - held_since > HOLD_SECONDS:
                # Builds run in a thread, but compiled code keeps the GIL until it
                # returns: 1,000 cells held the event loop for 12-15 ms. A real sleep,
                # however short, lets the waiting loop thread take the GIL; sleep(0)
                # gave it back before that thread was scheduled.
                time.sleep(YIELD_SECONDS)
                held_since = time.perf_counter()
            ea, ee = esc(account), esc(event)
            expand(ea, ee, minute, bval, n)
            rk = (event, minute, bval)
            rollup[rk] = rollup.get(rk, 0) + n

            for ikey, member in (
                (keys.events, ee),
                (keys.accounts(ee), ea),
                (keys.account_events(ea), ee),
            ):
                if (ikey, member) not in indexed:
                    indexed.add((ikey, member))
                    indexes.setdefault(ikey, set()).add(member)
            y, m, d, _, _ = parts_of(minute)
            for rkey in (keys.ranking(ee, (y, m, d)), keys.ranking(ee, (y, m))):
                r = rankings.get(rkey)
                if r is None:
                    rankings[rkey] = {ea: n}
                else:
                    r[ea] = r.get(ea, 0) + n

        for (event, minute, bval), n in rollup.items():
            expand(ROLLUP, esc(event), minute, bval, n)
        self._forget_if_large()

        return Batch(node, seq, counters, indexes, rankings, expire, cells=len(cells))
