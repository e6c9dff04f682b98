"""Redis flush speed: distinct counter cells written per second.

    python bench/flush_redis.py [--quick]

tallyd's flush path (a `Batch` of distinct cells → `RedisStore.apply`: one Lua
script that checks the batch marker, then HINCRBY/ZADD/ZINCRBY/EXPIREAT) against,
in the same run and on the same redis-server, `redis-benchmark -P 100` sending
pipelined HINCRBY to random hashes and fields: Redis's own speed for the
same command, with no exactly-once bookkeeping.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, quick, report

from tallyd.stores import Batch
from tallyd.stores.redis import RedisStore


def redis_benchmark(port: int, n: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-n",
            str(n),
            "-P",
            "100",
            "-r",
            "1000000",
            "-c",
            "4",
            "--csv",
            "HINCRBY",
            "h:__rand_int__",
            "__rand_int__",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith('"HINCRBY'))
    return float(line.split(",")[1].strip('"'))


def batches(count: int, cells: int) -> list[Batch]:
    out = []
    for b in range(count):
        counters: dict[str, dict[str, int]] = {}
        for i in range(cells):
            key = f"acct{(b * cells + i) // 60 % 5000}/pageview/2013/09/05/{i % 24:02d}"
            counters.setdefault(key, {})[f"{i % 60:02d}"] = 1
        out.append(Batch("bench", b + 1, counters=counters))
    return out


async def tallyd_rate(url: str, work: list[Batch]) -> float:
    store = RedisStore(url)
    await store.open()
    total = sum(b.cell_count() for b in work)
    t0 = time.perf_counter()
    for b in work:
        assert await store.apply(b)
    elapsed = time.perf_counter() - t0
    await store.close()
    return total / elapsed


def main() -> None:
    short = quick()
    binary = shutil.which("redis-server")
    if not binary or not shutil.which("redis-benchmark"):
        raise SystemExit(
            "redis-server and redis-benchmark are needed (./scripts/test.sh installs them)"
        )
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        n = 500_000 if short else 2_000_000
        reference = max(redis_benchmark(port, n) for _ in range(2))
        work = batches(10 if short else 40, 50_000)
        rate = asyncio.run(tallyd_rate(f"redis://127.0.0.1:{port}/0", work))
    finally:
        server.terminate()
        server.wait()
    figures = {
        "cells_per_s": round(rate),
        "redis_benchmark_hincrby_per_s": round(reference),
        "batch_cells": 50_000,
    }
    ratios = {"vs_redis_benchmark": round(rate / reference, 3)}
    rows = [
        ("redis-benchmark -P 100 HINCRBY (reference)", f"{reference:,.0f} commands/s"),
        ("tallyd batches of 50,000 distinct cells", f"{rate:,.0f} cells/s"),
        ("ratio", f"{rate / reference:.3f} (target ≥ 0.5)"),
    ]
    report("flush_redis", rows, figures, ratios)


if __name__ == "__main__":
    main()
