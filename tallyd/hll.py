"""HyperLogLog registers for distinct-visitor estimates where the store has no PFADD.

Redis keeps its own HyperLogLogs (PFADD/PFCOUNT). SQLite stores these: 2^14 registers,
a standard error of 0.81% like Redis. Most days of most badges see few visitors, so a
sketch is stored sparse (3 bytes per register in use) until dense is smaller, and a
flush that changes no register writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

P: Final = 14
M: Final = 1 << P
_ALPHA: Final = 0.7213 / (1 + 1.079 / M)
_SPARSE: Final = b"S"
_DENSE: Final = b"D"
# Past this many registers in use, the dense form (M bytes) is the smaller one.
_SPARSE_MAX: Final = M // 3

Registers = dict[int, int] | bytearray


def load(blob: bytes | None) -> Registers:
    if not blob:
        return {}
    if blob[:1] == _DENSE:
        return bytearray(blob[1:])
    pairs = blob[1:]
    return {int.from_bytes(pairs[i : i + 2], "big"): pairs[i + 2] for i in range(0, len(pairs), 3)}


def dump(registers: Registers) -> bytes:
    if isinstance(registers, bytearray):
        return _DENSE + bytes(registers)
    return _SPARSE + b"".join(
        i.to_bytes(2, "big") + r.to_bytes(1, "big") for i, r in sorted(registers.items())
    )


def add(registers: Registers, hashes: Iterable[str]) -> tuple[Registers, bool]:
    """Add 64-bit hashes given as 16 hex digits; returns the registers and if any rose."""
    changed = False
    for h in hashes:
        x = int(h, 16)
        # Position of the first 1-bit in the 50 bits above the index, counted from 1.
        rank = 64 - P - (x >> P).bit_length() + 1
        i = x & (M - 1)
        if rank > (registers.get(i, 0) if isinstance(registers, dict) else registers[i]):
            registers[i] = rank
            changed = True
    if isinstance(registers, dict) and len(registers) > _SPARSE_MAX:
        dense = bytearray(M)
        for i, r in registers.items():
            dense[i] = r
        registers = dense
    return registers, changed


def estimate(registers: Registers) -> int:
    """Cardinality estimate with the small-range (linear counting) correction."""
    if isinstance(registers, dict):
        values = list(registers.values())
        histogram = [M - len(values)] + [
            values.count(r) for r in range(1, max(values, default=0) + 1)
        ]
    else:
        # bytes.count runs in C; a loop over 16,384 registers would not.
        histogram = [registers.count(r) for r in range(max(registers) + 1)]
    zeros = histogram[0]
    raw = _ALPHA * M * M / math.fsum(n * 2.0**-r for r, n in enumerate(histogram))
    if raw <= 2.5 * M and zeros:
        return round(M * math.log(M / zeros))
    return round(raw)
