"""How a serving process runs: glibc's mmap threshold, Python's collector, how often
the interpreter passes the GIL between threads, and what a repeated stop signal means.

Each is set once, by `tallyd serve` in each process that serves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import time
from typing import Final

# glibc's mallopt parameter: allocations from this size up get their own mapping.
M_MMAP_THRESHOLD: Final = -3
# Request bodies and socket reads (up to --max-body, 1 MiB) stay under it: at 128 KiB
# every 444 KB body was a fresh mapping, faulted in page by page and unmapped again,
# a tenth of the server's time; HTTP ingest went from 0.44 to 0.70 of its reference.
MMAP_THRESHOLD: Final = 1024 * 1024


def return_freed_memory() -> None:
    """Keep glibc from holding on to the memory of large freed blocks.

    A batch's big tables (dictionaries of 100,000 keys, JSON documents of megabytes)
    are freed after every flush. glibc raises its mmap threshold each time such a
    block is freed, so later ones come from the heap, whose freed space it keeps: with
    100,000 accounts the peak RSS was 190 MB with the moving threshold and 159 MB with
    it fixed (docs/benchmarks.md, memory). Setting it fixes it; elsewhere, no-op.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


# Python's collector, tuned for a server whose connections live for seconds. Each
# connection is ~23 tracked objects (transport, socket, parser and its bound
# callbacks, futures), so 5,000 slow clients are 115,000 objects that outlive the
# young passes. With the defaults (700, 10, 10), under 1,000 connections a second:
# 31 young passes a second, 3 middle ones of 1-6 ms, and a full pass of 67-147 ms
# every 3 s (over 210,000 objects, 77,000 of them the start-up's modules and tables).
# A young pass every 20,000 allocations instead: about one a second of ~3 ms, a middle
# one every 20 of those, and a full pass rarely; an honest client's slowest answer
# under the crowd went from 100-180 ms to 10-22 ms.
YOUNG: Final = 20_000
MIDDLE: Final = 20
OLD: Final = 50


# The flush and reader threads run Python too (building a batch's rows), and the event
# loop waits for the GIL until the interpreter's switch interval passes: 5 ms by
# default, a whole badge view's budget many times over. Measured side by side (quick
# benches, 2 cores), 0.2 ms against 5 ms: during a flood of new accounts (each flush
# writing thousands of rows) an honest client's p99 ratio 2.0-2.6 against 3.3-4.5;
# bus ingest of the realistic corpus 0.92-0.95 of its ceiling against 0.64-0.69. It
# costs where little contends: under 5,000 slowloris heads the honest p99 ratio was
# 2.1-2.8 against 1.5-2.4 (1 ms: slowloris as 5 ms, the flood 3.3: no middle).
SWITCH_INTERVAL: Final = 0.0002


def pass_gil_often() -> None:
    """Let the event loop take the GIL back from other threads within 0.2 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def settle_collector() -> None:
    """Collect once, then keep everything alive now (modules, tables, the app) out of
    later passes (`gc.freeze`), and make passes rarer. Call when the app is built.

    Frozen objects are still freed by reference counting; only garbage cycles among
    them would stay, and start-up objects live as long as the process anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)


# A stop signal met again this soon is the same request, not "again, to force":
# `timeout` signals its command and then the command's process group, so tallyd got
# SIGTERM twice within a millisecond, took the second as a forced stop, and lost the
# counts not yet flushed.
SAME_REQUEST: Final = 0.5


class StopSignals:
    """The stop requests a process has had: the first stops it in order, another at
    least SAME_REQUEST seconds later forces it."""

    def __init__(self) -> None:
        self.first: float | None = None

    @property
    def asked(self) -> bool:
        """Whether a stop was asked for."""
        return self.first is not None

    def press(self) -> int:
        """1 for the first request, 2 for one that forces, 0 for a repeat of the first."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
            return 1
        return 2 if now - self.first >= SAME_REQUEST else 0
