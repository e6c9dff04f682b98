"""Remembering producers' event ids for the de-duplication window (SPEC §8)."""

from __future__ import annotations

import time
from collections.abc import Hashable


class Dedup:
    """Two generations of ids, each the ids first seen in one `window` of time.

    Windows are counted on a fixed grid of the monotonic clock, so an id seen at
    t is remembered until the end of the window after its own: at least `window`
    seconds and less than twice that, however sparse the traffic.
    Memory is capped: when a generation reaches `max_ids / 2` it rotates early,
    so a flood of unique ids shortens the window instead of growing memory.
    """

    def __init__(self, window: float = 600.0, max_ids: int = 1_000_000) -> None:
        self.window = window
        self.half = max(1, max_ids // 2)
        self._cur: set[Hashable] = set()
        self._prev: set[Hashable] = set()
        self._generation = self._now()
        self.early_rotations = 0

    def _now(self) -> int:
        return int(time.monotonic() // self.window)

    def seen(self, key: Hashable) -> bool:
        """True if `key` was seen within the window; otherwise remember it."""
        generation = self._now()
        if generation != self._generation:
            # One window on: the current ids become the previous; two or more: all go.
            self._prev = self._cur if generation == self._generation + 1 else set()
            self._cur = set()
            self._generation = generation
        if key in self._cur or key in self._prev:
            return True
        if len(self._cur) >= self.half:
            self.early_rotations += 1
            self._prev, self._cur = self._cur, set()
        self._cur.add(key)
        return False

    def ids(self) -> list[Hashable]:
        """Every id remembered now, oldest generation first."""
        return [*self._prev, *self._cur]

    def __len__(self) -> int:
        return len(self._cur) + len(self._prev)
