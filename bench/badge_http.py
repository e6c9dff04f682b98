"""Badge requests per second, counting, against nginx serving the same SVGs as files.

    python bench/badge_http.py [--quick]

`wrk -t2 -c64` asks for one of 1,000 badge ids at random. tallyd counts every view
and draws the badge (SQLite store, the default); nginx serves a static copy of each
badge with the same cache headers — the second seed's architecture without counting.
The runs alternate (nginx, tallyd, nginx, tallyd, ...) so machine noise hits both;
each side's best run is kept. Afterwards, tallyd's `all` rollup must hold exactly every
view wrk completed (plus at most one in-flight request per connection at the end).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nginx, Tallyd, free_port, quick, report, wrk

IDS = 1000
ROUNDS = 3
CONNECTIONS = 64

NGINX_CONF = """
worker_processes auto;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    server {
        listen 127.0.0.1:%(port)d;
        location /badge/ {
            root %(root)s;
            types { image/svg+xml svg; }
            charset utf-8;
            charset_types image/svg+xml;
            add_header Cache-Control "max-age=0, no-cache, no-store, must-revalidate" always;
            add_header Expires "Thu, 01 Jan 1970 00:00:00 GMT" always;
        }
    }
}
"""


def main() -> None:
    short = quick()
    seconds = 5 if short else 15

    t = Tallyd()
    nginx = None
    try:
        # Every id viewed once, so the runs measure the steady state of a busy badge.
        root = Path(t.dir) / "static"
        (root / "badge").mkdir(parents=True)
        for i in range(1, IDS + 1):
            status, svg = t.request("GET", f"/badge/id{i}.svg")
            assert status == 200, svg
            (root / "badge" / f"id{i}.svg").write_bytes(svg)
        time.sleep(0.5)
        port = free_port()
        nginx = Nginx(NGINX_CONF % {"port": port, "root": root})
        time.sleep(0.3)

        def counted() -> int:
            return int(t.get_json("/api/stats/track/all/hit")["total"])

        before = counted()
        runs: dict[str, list[dict[str, float]]] = {"nginx": [], "tallyd": []}
        for _ in range(ROUNDS):
            runs["nginx"].append(wrk(f"http://127.0.0.1:{port}", seconds, IDS, "/badge/id%d.svg"))
            runs["tallyd"].append(
                wrk(f"http://127.0.0.1:{t.port}", seconds, IDS, "/badge/id%d.svg")
            )
        time.sleep(1.0)  # the last flush
        views = counted() - before
    finally:
        if nginx is not None:
            nginx.stop()
        t.stop()

    sent = sum(r["requests"] for r in runs["tallyd"])
    errors = sum(r["non_2xx"] for r in runs["tallyd"])
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in runs.items()}
    ratio = best["tallyd"]["rps"] / best["nginx"]["rps"]
    # wrk stops with up to one request per connection in flight: counted, not completed.
    exact = sent <= views <= sent + ROUNDS * CONNECTIONS
    figures = {
        "tallyd_rps": round(best["tallyd"]["rps"]),
        "nginx_rps": round(best["nginx"]["rps"]),
        "p99_ms": round(best["tallyd"]["p99_ms"], 2),
        "nginx_p99_ms": round(best["nginx"]["p99_ms"], 2),
        "requests": int(sent),
        "counted": views,
        "counted_fraction": round(views / sent, 4) if sent else 0.0,
        "non_2xx": int(errors),
        "runs_tallyd_rps": [round(r["rps"]) for r in runs["tallyd"]],
        "runs_nginx_rps": [round(r["rps"]) for r in runs["nginx"]],
    }
    rows = [
        (f"tallyd, counting (best of {ROUNDS})", f"{figures['tallyd_rps']:,} req/s"),
        (f"nginx, static files (best of {ROUNDS})", f"{figures['nginx_rps']:,} req/s"),
        ("ratio", f"{ratio:.3f}  (target ≥ 0.4)"),
        ("tallyd p99", f"{figures['p99_ms']} ms  (target ≤ 10 ms)"),
        ("views completed / counted", f"{int(sent):,} / {views:,}  exact: {exact}"),
    ]
    report("badge_http", rows, figures, {"vs_nginx": round(ratio, 3)})
    if not exact or errors:
        raise SystemExit("badge views were lost or failed")


if __name__ == "__main__":
    main()
