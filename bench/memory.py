"""Peak memory of tallyd ingesting at full rate with 100,000 distinct accounts.

    python bench/memory.py [--quick]

One publisher (this process) sends Bootic frames flat out over ZeroMQ to
`tallyd serve` on SQLite with its default flags: 100,000 accounts, each event
a random one of them, event times over the last hour. tallyd's receive
high-water mark (default 100,000 messages) bounds what waits in its socket;
beyond it the bus holds the backlog on the publisher's side, so tallyd runs at
its own full rate. When the store holds every event (checked exactly), the
kernel's peak resident set size of the tallyd process (VmHWM) is the figure.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tallyd, free_port, quick, report
from ingest_zmq import publisher, send_all, wait_subscribed

ACCOUNTS = 100_000
TARGET_MB = 200


def frames(n: int, now: int) -> list[bytes]:
    """Every account once in a shuffled first round, then accounts at random."""
    rng = random.Random(7)
    first = list(range(ACCOUNTS))
    rng.shuffle(first)
    accounts = first + [rng.randrange(ACCOUNTS) for _ in range(n - ACCOUNTS)]
    return [
        b"pageview "
        + orjson.dumps(
            {
                "type": "pageview",
                "data": {"account": f"acct{a}"},
                "time": now - 3600 + i * 3600 // n,
            }
        )
        for i, a in enumerate(accounts)
    ]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def main() -> None:
    n = 300_000 if quick() else 1_000_000
    stream = frames(n, int(time.time()))
    port = free_port()
    pub = publisher(port)
    t = Tallyd("--zmq", f"tcp://127.0.0.1:{port}")
    db = sqlite3.connect(t.store.removeprefix("sqlite:///"))

    def stored() -> int:
        row = db.execute("SELECT sum(value) FROM counters WHERE key = 'all/pageview'").fetchone()
        return int(row[0] or 0)

    try:
        wait_subscribed(pub)
        idle_kb = status_kb(t.proc.pid, "VmRSS")
        t0 = time.perf_counter()
        send_all(pub, stream)
        while stored() < n:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        peak_kb = status_kb(t.proc.pid, "VmHWM")
        end_kb = status_kb(t.proc.pid, "VmRSS")
        assert stored() == n
        accounts = int(
            db.execute("SELECT count(*) FROM counters WHERE key LIKE 'acct%/pageview'").fetchone()[
                0
            ]
        )
    finally:
        t.stop()
        pub.close(0)

    peak_mb = peak_kb / 1024
    figures = {
        "events": n,
        "accounts": accounts,
        "events_per_s": round(n / elapsed),
        "peak_rss_mb": round(peak_mb, 1),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "end_rss_mb": round(end_kb / 1024, 1),
    }
    rows = [
        ("events", f"{n:,} over {accounts:,} distinct accounts, all counted"),
        ("rate, until in the store", f"{n / elapsed:,.0f} events/s"),
        ("RSS at start / at the end", f"{idle_kb / 1024:.1f} / {end_kb / 1024:.1f} MB"),
        ("peak RSS (VmHWM)", f"{peak_mb:.1f} MB  (target ≤ {TARGET_MB} MB)"),
    ]
    report("memory", rows, figures, {"peak_vs_target": round(peak_mb / TARGET_MB, 3)})
    if accounts != ACCOUNTS:
        raise SystemExit(f"expected {ACCOUNTS:,} accounts in the store, found {accounts:,}")


if __name__ == "__main__":
    main()
