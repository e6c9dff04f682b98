"""The HyperLogLog sketch SQLite stores for distinct visitors."""

from __future__ import annotations

import hashlib

from tallyd import hll


def hashes(n: int, start: int = 0) -> list[str]:
    return [hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in range(start, n)]


def test_small_sketches_are_sparse_and_exact() -> None:
    registers, changed = hll.add(hll.load(None), hashes(50))
    assert changed and isinstance(registers, dict)
    blob = hll.dump(registers)
    assert blob[:1] == b"S" and len(blob) == 1 + 3 * len(registers)
    assert hll.estimate(hll.load(blob)) == 50
    # The same visitors again change nothing, so nothing needs writing.
    again, changed = hll.add(hll.load(blob), hashes(50))
    assert not changed and again == registers


def test_large_sketches_turn_dense_and_estimate_within_error() -> None:
    registers, _ = hll.add(hll.load(None), hashes(100_000))
    assert isinstance(registers, bytearray) and len(registers) == hll.M
    blob = hll.dump(registers)
    assert blob[:1] == b"D"
    estimate = hll.estimate(hll.load(blob))
    assert abs(estimate - 100_000) <= 3_000, estimate  # 0.81% standard error; 3% bound


def test_sparse_and_dense_agree() -> None:
    sparse, _ = hll.add({}, hashes(3_000))
    dense = bytearray(hll.M)
    for i, r in sparse.items():  # type: ignore[union-attr]
        dense[i] = r
    assert hll.estimate(sparse) == hll.estimate(dense)
