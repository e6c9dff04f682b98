"""Long work on the event loop, done in turns short enough that nobody waits long.

A crowd of late request heads to refuse, or a body of events the fast path cannot
take, is work for every client at once: done in one go, it held an honest request
for milliseconds. A `Pace` gives a loop of such work a budget of the event loop's
time per turn; past it, `turn` lets the loop run everything else ready first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

# Seconds of work per turn of the event loop: a badge view costs about 30 µs, so an
# honest request waits at most a few views' time behind such work.
TURN: Final = 0.0003


class Pace:
    __slots__ = ("ends", "seconds")

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = TURN if seconds is None else seconds
        self.ends = time.perf_counter() + self.seconds

    async def turn(self) -> bool:
        """Let the event loop run if this turn's time is spent; whether it did."""
        if time.perf_counter() <= self.ends:
            return False
        await asyncio.sleep(0)
        self.ends = time.perf_counter() + self.seconds
        return True
