"""Retention (SPEC §2): the one rule for when a counter hash is past it.

The fine-grained hashes are kept a number of days after their period ends: an
hour's hash (fields are minutes) `minutes_days`, a day's hash (fields are hours)
`hours_days`; the year, month and all-time hashes forever. A key past its
retention is never written (the expansion drops it) and never read (an answer
shows zeros for it, whatever the store or the unflushed cells still hold), so
every store gives the same answer whether or not it has deleted the key yet:
Redis deletes it by `EXPIREAT` at that second, SQLite at its next prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY = 86400
# Distinct (time zone, period) expiries remembered: ~10 years of hours.
REMEMBERED = 100_000


@dataclass(frozen=True)
class Retention:
    """How long the fine-grained hashes live, in days; 0 keeps them forever."""

    minutes_days: int = 7
    hours_days: int = 400

    def expires_at(self, tz: ZoneInfo, parts: tuple[str, ...]) -> int:
        """The Unix time from which the hash of the period named by `parts` (local
        `YYYY`, `MM`, `DD`, `HH`, as in its key) is past retention; 0: never."""
        depth = len(parts)
        keep = self.hours_days if depth == 3 else self.minutes_days if depth == 4 else 0
        return _period_end(tz, parts) + keep * DAY if keep else 0

    def is_past(self, tz: ZoneInfo, parts: tuple[str, ...], now: float) -> bool:
        """Whether the hash of `parts` is past retention at `now` (Unix time)."""
        return not kept(self.expires_at(tz, parts), now)


def kept(expires_at: int, now: float) -> bool:
    """Whether a hash expiring at `expires_at` (0: never) is still kept at `now`.

    The expiry instant itself is past: from that second on no write and no read
    touches the key, the same second Redis starts refusing it.
    """
    return expires_at == 0 or now < expires_at


@lru_cache(maxsize=REMEMBERED)
def _period_end(tz: ZoneInfo, parts: tuple[str, ...]) -> int:
    """The Unix time a local day (`Y, M, D`) or hour (`Y, M, D, H`) ends.

    Worked out from the key's own parts, so every cell of a key, whichever real
    hour it came from, gives the same instant: a day ends at the next local
    midnight (23 or 25 hours on DST days), and the hour repeated when clocks go
    back ends after its second pass.
    """
    y, m, d = int(parts[0]), int(parts[1]), int(parts[2])
    if len(parts) == 3:
        day = date(y, m, d)
        if day == date.max:  # 9999-12-31 has no next day for datetime: it ends 24 h on
            return int(datetime.combine(day, datetime.min.time(), tz).timestamp()) + 86400
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
        return int(midnight.timestamp())
    h = int(parts[3])
    start = max(datetime(y, m, d, h, tzinfo=tz, fold=fold).timestamp() for fold in (0, 1))
    return int(start) + 3600
