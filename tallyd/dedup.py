"""Remembering producers' event ids for the de-duplication window (SPEC §8)."""

from __future__ import annotations

import time
from collections.abc import Hashable


class Dedup:
    """Two generations of ids, rotated every `window` seconds.

    An id is remembered for at least `window` seconds and at most twice that.
    Memory is capped: when a generation reaches `max_ids / 2` it rotates early,
    so a flood of unique ids shortens the window instead of growing memory.
    """

    def __init__(self, window: float = 600.0, max_ids: int = 1_000_000) -> None:
        self.window = window
        self.half = max(1, max_ids // 2)
        self._cur: set[Hashable] = set()
        self._prev: set[Hashable] = set()
        self._rotated = time.monotonic()
        self.early_rotations = 0

    def seen(self, key: Hashable) -> bool:
        """True if `key` was seen within the window; otherwise remember it."""
        if key in self._cur or key in self._prev:
            return True
        cur = self._cur
        if len(cur) >= self.half:
            self.early_rotations += 1
            self._rotate()
        elif time.monotonic() - self._rotated >= self.window:
            self._rotate()
        self._cur.add(key)
        return False

    def _rotate(self) -> None:
        self._prev, self._cur = self._cur, set()
        self._rotated = time.monotonic()

    def ids(self) -> list[Hashable]:
        """Every id remembered now, oldest generation first."""
        return [*self._prev, *self._cur]

    def __len__(self) -> int:
        return len(self._cur) + len(self._prev)
