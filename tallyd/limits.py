"""Limits that keep one abuser from costing everyone (SPEC §8): new names per
minute, and counted badge views per client. Both use bounded memory, and neither
keeps a client's address: only Python's in-memory hash of it (SipHash under a key
random per process)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from tallyd.events import MAX_KNOWN
from tallyd.seen import SeenNames
from tallyd.shard import Shard


def _minute() -> int:
    return int(time.monotonic() // 60)


# New names may come at once up to this many seconds' worth of a minute's allowance;
# past that they are admitted at its pace. Spent all at once, a minute's 20,000 new
# accounts made 0.65 s of parsing, expanding and writing in the same second, and an
# honest client's p99 doubled while it lasted (`bench/soak.py`).
BURST_SECONDS: Final = 10.0


class NewNames:
    """At most `per_minute` accounts (badge ids) new to this process a minute, at an
    even pace: the allowance refills continuously (per_minute / 60 a second) and
    holds at most BURST_SECONDS' worth, so a flood cannot spend a minute's at once.

    `known` is the set of names already validated (shared with ingest's fast path,
    which counts only names in it): a name in it is not new. 0: no limit.
    """

    def __init__(self, known: set[str], per_minute: int, seen: SeenNames | None = None) -> None:
        self.known = known
        # Every name ever admitted, for badges' first views (tallyd.seen).
        self.seen = seen or SeenNames()
        self.per_minute = per_minute
        self.refused = 0
        self._rate = per_minute / 60  # names a second
        self.burst = max(1.0, self._rate * BURST_SECONDS)
        self._allowance = self.burst
        self._at = time.monotonic()

    def admit(self, name: str) -> bool:
        """Whether a name may be counted; a new one is remembered if so."""
        if name in self.known:
            return True
        if self.per_minute:
            if self.room() == 0:
                self.refused += 1
                return False
            self._allowance -= 1.0
        self.remember(name)
        return True

    def room(self) -> int:
        """How many new names would be admitted now, -1 for no limit (nothing is
        spent by asking)."""
        if not self.per_minute:
            return -1
        now = time.monotonic()
        self._allowance = min(self.burst, self._allowance + (now - self._at) * self._rate)
        self._at = now
        return int(self._allowance)

    def retry_after(self, names: int = 1) -> int:
        """Whole seconds until `names` new names fit (at most BURST_SECONDS' worth:
        no more ever fit at once), at least 1: a `Retry-After` after which the names
        refused can be let in, if nobody else takes the room first."""
        if self.room() < 0:
            return 1
        missing = min(float(names), self.burst) - self._allowance
        return max(1, math.ceil(missing / self._rate))

    def refuse(self, n: int) -> None:
        """`n` new names refused without asking `admit`: a fast path that saw no `room`."""
        self.refused += n

    def remember(self, name: str) -> None:
        """Know a name without spending the minute's allowance on it."""
        if name not in self.known:
            self.seen.add(name)
        if len(self.known) >= MAX_KNOWN:
            self.known.pop()
        self.known.add(name)

    def admit_for(self, shard: Shard | None) -> Callable[[str], bool]:
        """`admit` for a node or worker counting `shard` of the accounts: another
        shard's name is remembered (so the fast path skips its events cheaply) but
        not held to this node's limit, which is for the names it counts."""
        if shard is None:
            return self.admit

        def admit(name: str) -> bool:
            if shard.owns(name):
                return self.admit(name)
            self.remember(name)
            return True

        return admit


class Limited(Exception):
    """A view or event refused by a limit; `retry_after` seconds until it lifts."""

    def __init__(self, reason: str, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def is_camo(user_agent: bytes) -> bool:
    """GitHub's image proxy: it fetches README images as `github-camo (<build hash>)`.

    It fetches for every viewer of every README from a few addresses: a limit per
    client would stop counting a whole project's readers, so it is not applied
    to it (its own cache already spares tallyd repeated views of one reader)."""
    return user_agent[:11].lower() == b"github-camo"


class ClientRate:
    """Counted badge views per (client, id) and minute: `burst` of them, then none
    until the next minute. 0: no limit.

    The table is cleared each minute and holds at most `max_entries` pairs; past
    that, a new pair is let through uncounted by the limit (`overflows`), so a flood
    of addresses cannot grow memory, nor stop honest clients from being counted.
    """

    def __init__(self, burst: int, max_entries: int = 200_000) -> None:
        self.burst = burst
        self.max_entries = max_entries
        self.limited = 0
        self.overflows = 0
        self._minute = _minute()
        self._views: dict[int, int] = {}

    def allow(self, client: str, ident: str, user_agent: bytes) -> bool:
        if not self.burst or is_camo(user_agent):
            return True
        minute = _minute()
        if minute != self._minute:
            self._minute = minute
            self._views.clear()
        key = hash((client, ident))
        n = self._views.get(key, 0)
        if n >= self.burst:
            self.limited += 1
            return False
        if n == 0 and len(self._views) >= self.max_entries:
            self.overflows += 1
            return True
        self._views[key] = n + 1
        return True
