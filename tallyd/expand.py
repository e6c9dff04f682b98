"""Expanding fine-grained cells into one store batch (SPEC §2, §3 design note).

Ingest only counts (account, event, minute, breakdown value) cells; this is
where each distinct cell becomes its five period counters, the `all` rollup,
the funnels, the indexes and the rankings — once per flush, not per event.
"""

from __future__ import annotations

from dataclasses import dataclass

from tallyd.events import Cell
from tallyd.keys import ROLLUP, KeySpace, escape
from tallyd.periods import Clock
from tallyd.stores.base import Batch

DAY = 86400


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

    def build(self, node: str, seq: int, cells: dict[Cell, int]) -> Batch:
        """Every store write for these cells, merged per (key, field)."""
        keys, parts_of = self.keys, self.clock.parts
        counters: dict[str, dict[str, int]] = {}
        expire: dict[str, int] = {}
        indexes: dict[str, set[str]] = {keys.events: set()}
        rankings: dict[str, dict[str, int]] = {}
        names: dict[str, str] = {}
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
                expire[day_key] = day_start + DAY + self.retention.hours_days * DAY
            if self.retention.minutes_days:
                expire[hour_key] = hour_start + 3600 + self.retention.minutes_days * DAY
            if bval is not None:
                inc(keys.funnel(acc, ev, (y,)), bval, n)
                inc(keys.funnel(acc, ev, (y, m)), bval, n)

        def esc(name: str) -> str:
            e = names.get(name)
            if e is None:
                e = names[name] = escape(name)
            return e

        for (account, event, minute, bval), n in cells.items():
            ea, ee = esc(account), esc(event)
            expand(ea, ee, minute, bval, n)
            rk = (event, minute, bval)
            rollup[rk] = rollup.get(rk, 0) + n

            indexes[keys.events].add(ee)
            indexes.setdefault(keys.accounts(ee), set()).add(ea)
            indexes.setdefault(keys.account_events(ea), set()).add(ee)
            y, m, d, _, _ = parts_of(minute)
            for rkey in (keys.ranking(ee, (y, m, d)), keys.ranking(ee, (y, m))):
                r = rankings.get(rkey)
                if r is None:
                    rankings[rkey] = {ea: n}
                else:
                    r[ea] = r.get(ea, 0) + n

        for (event, minute, bval), n in rollup.items():
            expand(ROLLUP, esc(event), minute, bval, n)

        return Batch(node, seq, counters, indexes, rankings, expire, cells=len(cells))
