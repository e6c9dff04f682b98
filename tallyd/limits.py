"""Limits that keep one abuser from costing everyone (SPEC §8): new names per
minute, and counted badge views per client. Both use bounded memory, and neither
keeps a client's address: only Python's in-memory hash of it (SipHash under a key
random per process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tallyd.events import MAX_KNOWN
from tallyd.seen import SeenNames
from tallyd.shard import Shard


def _minute() -> int:
    return int(time.monotonic() // 60)


def seconds_to_next_minute() -> int:
    return max(1, 60 - int(time.monotonic() % 60))


class NewNames:
    """At most `per_minute` accounts (badge ids) new to this process each minute.

    `known` is the set of names already validated (shared with ingest's fast path,
    which counts only names in it): a name in it is not new. 0: no limit.
    """

    def __init__(self, known: set[str], per_minute: int, seen: SeenNames | None = None) -> None:
        self.known = known
        # Every name ever admitted, for badges' first views (tallyd.seen).
        self.seen = seen or SeenNames()
        self.per_minute = per_minute
        self.refused = 0
        self._minute = _minute()
        self._admitted = 0

    def admit(self, name: str) -> bool:
        """Whether a name may be counted; a new one is remembered if so."""
        if name in self.known:
            return True
        if self.per_minute:
            minute = _minute()
            if minute != self._minute:
                self._minute, self._admitted = minute, 0
            if self._admitted >= self.per_minute:
                self.refused += 1
                return False
            self._admitted += 1
        self.remember(name)
        return True

    def refuse(self, n: int) -> None:
        """`n` new names refused without asking `admit`: a fast path that saw no `room`."""
        self.refused += n

    def room(self) -> bool:
        """Whether a new name would be admitted now (nothing is spent by asking)."""
        return not self.per_minute or self._minute != _minute() or self._admitted < self.per_minute

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
