"""HyperLogLog registers for distinct-visitor estimates where the store has no PFADD.

Redis keeps its own HyperLogLogs (PFADD/PFCOUNT); SQLite stores these registers,
zlib-compressed because a day's sketch for a small site is mostly zeros. 2^14
registers give a standard error of 0.81%, like Redis.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import Final

P: Final = 14
M: Final = 1 << P
_ALPHA: Final = 0.7213 / (1 + 1.079 / M)


def add(registers: bytearray, hashes: Iterable[str]) -> None:
    """Add 64-bit hashes given as 16 hex digits."""
    for h in hashes:
        x = int(h, 16)
        rest = x >> P
        # Position of the first 1-bit in the remaining 50 bits, counted from 1.
        rank = 64 - P - rest.bit_length() + 1
        i = x & (M - 1)
        if rank > registers[i]:
            registers[i] = rank


def estimate(registers: bytes | bytearray) -> int:
    """Cardinality estimate with the small-range (linear counting) correction."""
    # A histogram of register values: bytes.count runs in C, a loop over 16,384 would not.
    histogram = [registers.count(r) for r in range(max(registers) + 1)]
    zeros = histogram[0]
    raw = _ALPHA * M * M / math.fsum(n * 2.0**-r for r, n in enumerate(histogram))
    if raw <= 2.5 * M and zeros:
        return round(M * math.log(M / zeros))
    return round(raw)


def load(blob: bytes | None) -> bytearray:
    return bytearray(zlib.decompress(blob)) if blob else bytearray(M)


def dump(registers: bytearray) -> bytes:
    return zlib.compress(bytes(registers))
