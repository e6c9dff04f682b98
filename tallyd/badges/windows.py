"""Badge figures over local days of any time zone, from the server's own hashes.

Counts are kept per server-local day (in the month hash), hour (in the day hash) and
minute (in the hour hash). A window — this week, the last 7 days, each of the last 30
days — is a span of UTC time; it is covered by the coarsest server cells that fit in
it: whole server days, then whole hours, then, at an edge that cuts an hour, the
minutes while the hour hash is kept (7 days by default). Past that, an hour cut by an
edge counts whole in the window it starts in, so a day of a zone half an hour off the
server's is exact to the hour there. A plan is worked out once per figure and day, and
then each read is one snapshot of a few keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Final
from zoneinfo import ZoneInfo

from tallyd.periods import Clock, Parts
from tallyd.retention import Retention
from tallyd.stats import Stats

# metric → (days per bucket, buckets); week and the calendar periods are worked out.
ROLLING: Final = {"7d": (7, 1), "30d": (30, 1), "spark7": (1, 7), "spark30": (1, 30)}
CALENDAR: Final = ("today", "week", "month", "year")
WINDOWS: Final = (*CALENDAR, *ROLLING)
# A step that lands on every boundary: zones move by whole quarter hours.
_STEP: Final = 15


def local_midnight(day: date, tz: ZoneInfo) -> int:
    """The Unix minute a local day starts."""
    return int(datetime.combine(day, time(), tz).timestamp()) // 60


def buckets(metric: str, tz: ZoneInfo, today: date) -> list[tuple[int, int]]:
    """The [start, end) Unix minutes of each count a figure shows, oldest first."""
    end = today + timedelta(days=1)
    if metric in ROLLING:
        size, count = ROLLING[metric]
        first = end - timedelta(days=size * count)
        days = [first + timedelta(days=size * i) for i in range(count + 1)]
        edges = [local_midnight(d, tz) for d in days]
        return list(pairwise(edges))
    if metric == "today":
        start = today
    elif metric == "week":
        start = today - timedelta(days=today.weekday())
    elif metric == "month":
        start = today.replace(day=1)
    elif metric == "year":
        start = today.replace(month=1, day=1)
    else:
        raise ValueError(f"no window for metric {metric!r}")
    return [(local_midnight(start, tz), local_midnight(end, tz))]


@dataclass(frozen=True, slots=True)
class Plan:
    """Which server cells make up each bucket: the hashes to read (by their parts),
    each cell as (hash index, field, bucket), and the bucket of a cell's parts."""

    holders: list[tuple[str, ...]]
    cells: list[tuple[int, str, int]]
    bucket_of: dict[tuple[str, ...], tuple[int, int]]  # cell parts → (bucket, hash index)
    size: int


def plan(spans: list[tuple[int, int]], clock: Clock, retention: Retention, now: float) -> Plan:
    """Cover each [start, end) minute span with server days, hours and minutes."""
    parts = clock.parts
    owner: dict[tuple[str, ...], int] = {}  # cell parts → bucket; the first claim wins
    for b, (start, end) in enumerate(spans):
        m = start
        while m < end:
            p = parts(m)
            starts_day = parts(m - 1)[:3] != p[:3]
            if starts_day:
                day_end = _end(parts, m, p, 3)
                if day_end <= end:
                    owner.setdefault(p[:3], b)
                    m = day_end
                    continue
            hour_end = _end(parts, m, p, 4)
            starts_hour = starts_day or parts(m - 1)[:4] != p[:4]
            if starts_hour and hour_end <= end:
                owner.setdefault(p[:4], b)
            elif not retention.is_past(clock.tz, p[:4], now):
                for x in range(m, min(hour_end, end)):
                    owner.setdefault(parts(x), b)
            elif starts_hour:
                # Minutes no longer kept: the hour counts where it starts.
                owner.setdefault(p[:4], b)
            m = min(hour_end, end)
    index: dict[tuple[str, ...], int] = {}
    holders: list[tuple[str, ...]] = []
    cells: list[tuple[int, str, int]] = []
    bucket_of: dict[tuple[str, ...], tuple[int, int]] = {}
    for cell, b in owner.items():
        holder = cell[:-1]
        if len(holder) >= 3 and retention.is_past(clock.tz, holder, now):
            continue  # neither read nor added to, as everywhere else
        i = index.get(holder)
        if i is None:
            i = index[holder] = len(holders)
            holders.append(holder)
        cells.append((i, cell[-1], b))
        bucket_of[cell] = (b, i)
    return Plan(holders, cells, bucket_of, len(spans))


def _end(parts: Callable[[int], Parts], m: int, p: Parts, depth: int) -> int:
    """The first minute after `m` outside the server day (depth 3) or hour (4) of `p`."""
    left = 60 - int(p[4]) + (60 * (23 - int(p[3])) if depth == 3 else 0)
    guess = m + left
    # DST days and the repeated hour are longer, the skipped one shorter.
    while guess - _STEP > m and parts(guess - _STEP)[:depth] != p[:depth]:
        guess -= _STEP
    while parts(guess)[:depth] == p[:depth]:
        guess += _STEP
    while parts(guess - 1)[:depth] != p[:depth]:
        guess -= 1
    return guess


async def read(stats: Stats, account: str, event: str, p: Plan) -> list[int]:
    """Each bucket's count: the planned hashes in one snapshot, plus what is not flushed."""
    hashes, applied, view = await stats.hashes(account, event, p.holders)
    out = [0] * p.size
    for i, field, b in p.cells:
        out[b] += hashes[i].get(field, 0)
    parts = stats.clock.parts
    for (_, _, minute, _), n, batch in view.select(account, event):
        cp = parts(minute)
        found = p.bucket_of.get(cp[:3]) or p.bucket_of.get(cp[:4]) or p.bucket_of.get(cp)
        if found is not None and batch > applied[found[1]]:
            out[found[0]] += n
    return out
