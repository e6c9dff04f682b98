"""Query latency: one period answer, and a year of days as a series.

    python bench/query.py [--quick]

Loads a year of events for a few accounts into a fresh SQLite store, then
times sequential keep-alive requests. The reference is `/healthz` on the same
server and connection: the floor of one HTTP round trip through tallyd.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tallyd, percentile, quick, report


def timed(conn: object, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)  # type: ignore[attr-defined]
        r = conn.getresponse()  # type: ignore[attr-defined]
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    return out


def main() -> None:
    short = quick()
    n = 1000 if short else 5000
    events = 50_000 if short else 200_000

    t = Tallyd()
    try:
        rnd = random.Random(1)
        start = 1_356_998_400  # 2013-01-01
        for _ in range(0, events, 5000):
            batch = [
                {
                    "event": "pageview",
                    "account": f"acct{rnd.randrange(20)}",
                    "time": start + rnd.randrange(365 * 86400),
                }
                for _ in range(5000)
            ]
            status, body = t.request("POST", "/api/events?wait=flush", json.dumps(batch).encode())
            assert status == 202, body
        conn = t.conn()
        timed(conn, "/healthz", 200)  # warm up
        floor = timed(conn, "/healthz", n)
        month = timed(conn, "/api/stats/track/acct3/pageview/2013/09", n)
        day = timed(conn, "/api/stats/track/all/pageview/2013/09/05", n)
        series_path = (
            "/api/stats/series?account=acct3&event=pageview"
            "&from=2013-01-01&to=2013-12-31&interval=day"
        )
        series = timed(conn, series_path, max(50, n // 20))
        total = t.get_json("/api/stats/track/all/pageview")["total"]
        assert total == events, (total, events)
    finally:
        t.stop()

    period = month + day
    figures = {
        "period_p50_ms": round(percentile(period, 0.5), 3),
        "period_p99_ms": round(percentile(period, 0.99), 3),
        "series_ms": round(percentile(series, 0.5), 3),
        "series_p99_ms": round(percentile(series, 0.99), 3),
        "healthz_p99_ms": round(percentile(floor, 0.99), 3),
        "events_loaded": events,
    }
    ratios = {
        "period_p99_vs_healthz": round(figures["period_p99_ms"] / figures["healthz_p99_ms"], 2)
    }
    rows = [
        ("events loaded", f"{events:,}"),
        (
            "period answer p50 / p99",
            f"{figures['period_p50_ms']} / {figures['period_p99_ms']} ms  (target p99 ≤ 2 ms)",
        ),
        (
            "year of days as series p50 / p99",
            f"{figures['series_ms']} / {figures['series_p99_ms']} ms  (target ≤ 10 ms)",
        ),
        ("/healthz p99 (reference)", f"{figures['healthz_p99_ms']} ms"),
    ]
    report("query", rows, figures, ratios)


if __name__ == "__main__":
    main()
