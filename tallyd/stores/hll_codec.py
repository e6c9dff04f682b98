"""HyperLogLog registers between Redis's own encoding and tallyd's (`tallyd.hll`).

Both keep 2^14 registers of a 64-bit hash, so a sketch moves between stores as
its registers: an export writes them in `hll.dump`'s form whatever the store
keeps, and an import into Redis writes Redis's dense encoding (a 16-byte
`HYLL` header, then 6 bits per register, least significant bit first), with its
cached cardinality marked stale so that PFCOUNT works it out again.
"""

from __future__ import annotations

from tallyd import hll

MAGIC = b"HYLL"
HEADER = 16
DENSE, SPARSE = 0, 1
DENSE_BYTES = hll.M * 6 // 8
# Encoding dense, three unused bytes, then the cached cardinality with its
# "stale" bit (the top bit of its last byte) set.
DENSE_HEADER = MAGIC + bytes([DENSE, 0, 0, 0]) + bytes(7) + b"\x80"


class NotASketch(ValueError):
    """A Redis string that is no HyperLogLog."""


def from_redis(blob: bytes) -> hll.Registers:
    """The registers of a Redis HyperLogLog (dense or sparse)."""
    if len(blob) < HEADER or blob[:4] != MAGIC:
        raise NotASketch("not a Redis HyperLogLog")
    if blob[4] == DENSE:
        if len(blob) != HEADER + DENSE_BYTES:
            raise NotASketch("a dense HyperLogLog of the wrong size")
        return _compact(_unpack(blob[HEADER:]))
    if blob[4] != SPARSE:
        raise NotASketch(f"unknown HyperLogLog encoding {blob[4]}")
    registers: dict[int, int] = {}
    i, at, body = 0, HEADER, blob
    while at < len(body):
        op = body[at]
        if op & 0xC0 == 0:  # ZERO: 00xxxxxx, a run of 1-64 empty registers
            i += (op & 0x3F) + 1
            at += 1
        elif op & 0xC0 == 0x40:  # XZERO: 01xxxxxx yyyyyyyy, up to 16,384 empty
            if at + 1 >= len(body):
                raise NotASketch("a truncated sparse HyperLogLog")
            i += (((op & 0x3F) << 8) | body[at + 1]) + 1
            at += 2
        else:  # VAL: 1vvvvvxx, a run of 1-4 registers of value 1-32
            value, run = ((op >> 2) & 0x1F) + 1, (op & 0x3) + 1
            for r in range(i, i + run):
                registers[r] = value
            i += run
            at += 1
    if i != hll.M:
        raise NotASketch("a sparse HyperLogLog that does not cover every register")
    return _compact(registers)


def to_redis(registers: hll.Registers) -> bytes:
    """Redis's dense encoding of these registers."""
    dense = _dense(registers)
    out = bytearray(DENSE_BYTES)
    for g in range(hll.M // 4):
        r = 4 * g
        v = dense[r] | dense[r + 1] << 6 | dense[r + 2] << 12 | dense[r + 3] << 18
        out[3 * g : 3 * g + 3] = v.to_bytes(3, "little")
    return DENSE_HEADER + bytes(out)


def merge(a: hll.Registers, b: hll.Registers) -> hll.Registers:
    """The union of two sketches: each register at its higher value."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for i, r in b.items():
            if r > out.get(i, 0):
                out[i] = r
        return _compact(out)
    da, db = _dense(a), _dense(b)
    return _compact(bytearray(max(x, y) for x, y in zip(da, db, strict=True)))


def check(blob: bytes) -> hll.Registers:
    """The registers of a blob in `hll.dump`'s form; ValueError if it is not one."""
    if blob[:1] == b"D":
        if len(blob) != 1 + hll.M or max(blob[1:]) > 63:
            raise ValueError("dense registers must be 16,384 values of at most 63")
    elif blob[:1] == b"S":
        pairs = len(blob) - 1
        if pairs % 3 or any(
            int.from_bytes(blob[i : i + 2], "big") >= hll.M for i in range(1, len(blob), 3)
        ):
            raise ValueError("sparse registers must be (index < 16,384, value) triples")
    else:
        raise ValueError("registers must start with S (sparse) or D (dense)")
    return hll.load(blob)


def _unpack(data: bytes) -> bytearray:
    out = bytearray(hll.M)
    for g in range(hll.M // 4):
        v = int.from_bytes(data[3 * g : 3 * g + 3], "little")
        out[4 * g : 4 * g + 4] = bytes((v & 63, v >> 6 & 63, v >> 12 & 63, v >> 18 & 63))
    return out


def _dense(registers: hll.Registers) -> bytearray:
    if isinstance(registers, bytearray):
        return registers
    out = bytearray(hll.M)
    for i, r in registers.items():
        out[i] = r
    return out


def _compact(registers: hll.Registers) -> hll.Registers:
    """Sparse while few registers are in use, as `hll` keeps them."""
    if isinstance(registers, dict):
        return registers if len(registers) <= hll.M // 3 else _dense(registers)
    used = hll.M - registers.count(0)
    if used > hll.M // 3:
        return registers
    return {i: r for i, r in enumerate(registers) if r}
