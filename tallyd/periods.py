"""Calendar periods and their segments (SPEC §2), in one configured time zone.

Counting works on epoch minutes; a `Clock` turns one into the zero-padded local
parts (`2013`, `09`, `05`, `14`, `03`) that name keys and fields. Time zones
shift by whole multiples of 15 minutes, so a UTC minute maps to exactly one
local minute, DST included.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Local (year, month, day, hour, minute), zero-padded.
Parts = tuple[str, str, str, str, str]

LEVELS = ("all", "year", "month", "day", "hour")
MIN_YEAR, MAX_YEAR = 1970, 9999


class Clock:
    """Maps epoch minutes to local calendar parts; caches what it computed."""

    def __init__(self, tz: str = "UTC") -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {tz!r} (use an IANA name like Europe/Madrid)"
            ) from exc
        self.name = tz
        self._cache: dict[int, Parts] = {}

    def parts(self, minute: int) -> Parts:
        p = self._cache.get(minute)
        if p is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            d = datetime.fromtimestamp(minute * 60, self.tz)
            p = (
                f"{d.year:04d}",
                f"{d.month:02d}",
                f"{d.day:02d}",
                f"{d.hour:02d}",
                f"{d.minute:02d}",
            )
            self._cache[minute] = p
        return p

    def now(self) -> datetime:
        return datetime.now(self.tz)


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@dataclass(frozen=True)
class Period:
    """All time, or a year, month, day or hour; validated on construction."""

    year: int | None = None
    month: int | None = None
    day: int | None = None
    hour: int | None = None

    def __post_init__(self) -> None:
        y, m, d, h = self.year, self.month, self.day, self.hour
        if (
            (m is not None and y is None)
            or (d is not None and m is None)
            or (h is not None and d is None)
        ):
            raise ValueError("a period names its parts from the year down")
        if y is not None and not MIN_YEAR <= y <= MAX_YEAR:
            raise ValueError(f"year must be {MIN_YEAR}..{MAX_YEAR}")
        if m is not None and not 1 <= m <= 12:
            raise ValueError("month must be 1..12")
        if d is not None and y is not None and m is not None and not 1 <= d <= days_in_month(y, m):
            raise ValueError(f"day must be 1..{days_in_month(y, m)} in {y}-{m:02d}")
        if h is not None and not 0 <= h <= 23:
            raise ValueError("hour must be 0..23")

    @classmethod
    def from_strings(cls, parts: list[str]) -> Period:
        """From path parts like `['2013', '2']` or `['2013', '02']`."""
        if len(parts) > 4:
            raise ValueError("too many period parts (year/month/day/hour at most)")
        nums: list[int] = []
        for p in parts:
            if not p.isdigit() or not p.isascii():
                raise ValueError(f"{p[:20]!r} is not a number")
            if len(p) > 4:  # past any part's range; int() of a long one would be slow
                raise ValueError(f"{p[:20]!r} is out of range (year 1970..9999, then 2 digits)")
            nums.append(int(p))
        return cls(*nums)

    @property
    def level(self) -> str:
        return LEVELS[len(self.parts)]

    @cached_property
    def parts(self) -> tuple[str, ...]:
        """Zero-padded key parts: `('2013', '09')` for September 2013."""
        out: list[str] = []
        if self.year is not None:
            out.append(f"{self.year:04d}")
            if self.month is not None:
                out.append(f"{self.month:02d}")
                if self.day is not None:
                    out.append(f"{self.day:02d}")
                    if self.hour is not None:
                        out.append(f"{self.hour:02d}")
        return tuple(out)

    def segments(self) -> list[int]:
        """Every segment of a bounded period; all time's years come from data."""
        if self.year is None:
            return []
        if self.month is None:
            return list(range(1, 13))
        if self.day is None:
            return list(range(1, days_in_month(self.year, self.month) + 1))
        return list(range(24 if self.hour is None else 60))

    def up(self) -> Period | None:
        if self.year is None:
            return None
        if self.month is None:
            return Period()
        if self.day is None:
            return Period(self.year)
        if self.hour is None:
            return Period(self.year, self.month)
        return Period(self.year, self.month, self.day)

    def field_of(self, p: Parts) -> str | None:
        """The segment field a local minute falls in, or None if outside."""
        n = len(self.parts)
        if p[:n] != self.parts:
            return None
        return p[n]
