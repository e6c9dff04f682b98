"""A progress bar on stderr for long commands (export, import), drawn only on a
terminal: piped or logged, a command prints its one-line summary instead."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

# Redraws per second at most: more only costs the work being shown.
REDRAW = 0.1


def rate(n: int, seconds: float) -> str:
    """`12,345/s`, the speed of `n` things in `seconds`."""
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "-"


class Progress:
    """`label [#####.....] 45% 12,345/27,000 keys 5,000/s` while work goes on."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total  # 0: not known
        self.unit = unit
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty()
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.shown and now - self._drawn >= REDRAW:
            self._drawn = now
            self._draw(now)

    def close(self) -> None:
        """End the bar's line (the caller prints the summary)."""
        if self.shown:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        total = max(self.total, self.done)
        counts = f"{self.done:,}/{total:,}" if self.total else f"{self.done:,}"
        text = f" {counts} {self.unit} {rate(self.done, now - self.started)}"
        width = shutil.get_terminal_size((80, 20)).columns
        room = width - len(self.label) - len(text) - 9
        if self.total and room >= 10:
            filled = room * self.done // total
            bar = f" [{'#' * filled}{'.' * (room - filled)}] {100 * self.done // total:3d}%"
        else:
            bar = ""
        self.stream.write(f"\r{self.label}{bar}{text}"[:width])
        self.stream.flush()
