"""Scaling out on one machine and across nodes: `--workers` and `--shard`.

    python bench/scale.py [--quick]

- Badges: `wrk -t2 -c64` on one of 1,000 cached badge ids, against tallyd with
  `--workers 1`, tallyd with `--workers 2` and nginx with `worker_processes 2`
  serving static copies of the same SVGs (SQLite store). The three alternate, round
  after round; the median of the rounds and their spread are reported. Every view
  wrk completed must be counted (plus at most one in flight per connection per run).
- ZeroMQ: the realistic corpus (bench/corpus.py) from one PUB socket, timed until
  the store holds every event, then checked exactly (`check_counts`): tallyd with
  `--workers 1` and `--workers 2` on SQLite and on Redis, and 1, 2 and 3 nodes
  `--shard i/N` on one Redis (each node reads the whole firehose and counts its share;
  one node is `redis_workers1`).

Figures: requests/s and p99 of each badge side, `workers2_vs_nginx` (target ≥ 0.8),
events/s of each ZeroMQ set-up and their ratios to one process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from statistics import median

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badge_http import IDS, NGINX_CONF, PATH, SERVER
from common import (
    Nginx,
    StoreCounts,
    Tallyd,
    check_counts,
    free_port,
    quick,
    report,
    until_counted,
    wrk,
)
from ingest_zmq import Stream, publisher, send_all, start_redis, stream, wait_subscribed

CONNECTIONS = 64


def badges(rounds: int, seconds: float) -> dict[str, list[dict[str, float]]]:
    """wrk runs against each side, alternating; each tallyd's count checked."""
    sides = {"workers1": Tallyd("--workers", "1"), "workers2": Tallyd("--workers", "2")}
    nginx = None
    try:
        root = Path(sides["workers1"].dir) / "static"
        (root / "badge").mkdir(parents=True)
        for i in range(1, IDS + 1):
            for name, t in sides.items():
                status, svg = t.request("GET", PATH % i)
                assert status == 200, svg
                if name == "workers1":
                    (root / "badge" / f"id{i}.svg").write_bytes(svg)
        port = free_port()
        conf = NGINX_CONF.replace("worker_processes auto", "worker_processes 2")
        nginx = Nginx(conf % {"servers": SERVER % {"port": port, "root": root}})
        time.sleep(1.0)
        urls = {name: f"http://127.0.0.1:{t.port}" for name, t in sides.items()}
        urls["nginx"] = f"http://127.0.0.1:{port}"
        before = {name: hits(t) for name, t in sides.items()}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for _ in range(rounds):
            for name, url in urls.items():
                runs[name].append(wrk(url, seconds, IDS, PATH))
        time.sleep(1.0)  # the last flushes
        for name, t in sides.items():
            sent = int(sum(r["requests"] for r in runs[name]))
            counted = hits(t) - before[name]
            if not sent <= counted <= sent + rounds * CONNECTIONS:
                raise SystemExit(f"{name}: {sent:,} views completed, {counted:,} counted")
            runs[name][0]["counted"] = counted
    finally:
        if nginx is not None:
            nginx.stop()
        for t in sides.values():
            t.stop()
    return runs


def hits(t: Tallyd) -> int:
    return int(t.get_json("/api/stats/track/all/hit")["total"])


def bus_rate(s: Stream, flags: list[list[str]], store: str | None) -> float:
    """Events/s from the first send until the store holds every event, for the
    processes started with `flags` (one list each: a node) all subscribed."""
    port = free_port()
    pub = publisher(port)
    n = len(s.frames)
    common = ["--zmq", f"tcp://127.0.0.1:{port}", "--zmq-hwm", str(n)]
    nodes = [Tallyd(*common, *f, store=store) for f in flags]
    counts = StoreCounts(nodes[0].store)
    try:
        for f in flags:
            workers = int(f[f.index("--workers") + 1]) if "--workers" in f else 1
            for _ in range(workers):
                wait_subscribed(pub)
        t0 = time.perf_counter()
        send_all(pub, s.frames)
        done = until_counted(counts, s.types, n)
        check_counts(counts, s.counts)
    finally:
        counts.close()
        for t in nodes:
            t.stop()
        pub.close(0)
    return n / (done - t0)


def main() -> None:
    short = quick()
    rounds, seconds = (2, 3) if short else (5, 10)
    n = 40_000 if short else 300_000
    load = os.getloadavg()
    runs = badges(rounds, seconds)
    med = {k: median(r["rps"] for r in v) for k, v in runs.items()}
    p99 = {k: median(r["p99_ms"] for r in v) for k, v in runs.items()}

    s = stream("realistic", n)
    started = start_redis()
    if started is None:
        raise SystemExit("redis-server is not installed (./scripts/test.sh installs it)")
    proc, redis_port = started
    url = f"redis://127.0.0.1:{redis_port}/0"
    client = redis.Redis(port=redis_port)
    setups: dict[str, tuple[list[list[str]], str | None]] = {
        "sqlite_workers1": ([["--workers", "1"]], None),
        "sqlite_workers2": ([["--workers", "2"]], None),
        "redis_workers1": ([["--workers", "1"]], url),
        "redis_workers2": ([["--workers", "2"]], url),
        "redis_shards2": ([["--shard", f"{i}/2"] for i in range(2)], url),
        "redis_shards3": ([["--shard", f"{i}/3"] for i in range(3)], url),
    }
    rates: dict[str, list[float]] = {k: [] for k in setups}
    try:
        for _ in range(1 if short else 3):
            for name, (flags, store) in setups.items():
                client.flushall()
                rates[name].append(bus_rate(s, flags, store))
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
    bus = {k: median(v) for k, v in rates.items()}
    load_after = os.getloadavg()

    figures: dict[str, object] = {f"{k}_rps": round(v) for k, v in med.items()} | {
        f"{k}_p99_ms": round(v, 2) for k, v in p99.items()
    }
    figures |= {f"runs_{k}_rps": [round(r["rps"]) for r in v] for k, v in runs.items()}
    figures |= {f"{k}_events_per_s": round(v) for k, v in bus.items()}
    figures |= {
        "events": n,
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
    }
    ratios = {
        "workers2_vs_nginx": round(med["workers2"] / med["nginx"], 3),
        "workers1_vs_nginx": round(med["workers1"] / med["nginx"], 3),
        "workers2_vs_workers1": round(med["workers2"] / med["workers1"], 3),
        "sqlite_workers2_vs_workers1": round(bus["sqlite_workers2"] / bus["sqlite_workers1"], 3),
        "redis_workers2_vs_workers1": round(bus["redis_workers2"] / bus["redis_workers1"], 3),
        "shards2_vs_shards1": round(bus["redis_shards2"] / bus["redis_workers1"], 3),
        "shards3_vs_shards1": round(bus["redis_shards3"] / bus["redis_workers1"], 3),
    }

    def spread(k: str) -> str:
        rps = [r["rps"] for r in runs[k]]
        return f"{med[k]:,.0f} req/s (runs {min(rps):,.0f}-{max(rps):,.0f}), p99 {p99[k]:.2f} ms"

    rows = [
        ("load average before / after", f"{load[0]:.2f} / {load_after[0]:.2f}"),
        (f"badge, tallyd --workers 1 (median of {rounds})", spread("workers1")),
        (f"badge, tallyd --workers 2 (median of {rounds})", spread("workers2")),
        (f"badge, nginx 2 workers (median of {rounds})", spread("nginx")),
        ("workers2 / nginx", f"{ratios['workers2_vs_nginx']:.3f}  (target ≥ 0.8)"),
        *((f"bus {k}", f"{v:,.0f} events/s") for k, v in bus.items()),
    ]
    report("scale", rows, figures, ratios)


if __name__ == "__main__":
    main()
