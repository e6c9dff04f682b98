"""Badge requests per second, counting, against nginx serving the same SVGs as files.

    python bench/badge_http.py [--quick]

`wrk -t2 -c64` asks for one of 1,000 badge ids at random. tallyd counts every view
and draws the badge (SQLite store, the default); nginx serves a static copy of each
badge with the same cache headers — the second seed's architecture without counting.
The runs alternate (nginx, tallyd, nginx, tallyd, ...) so machine noise hits both;
each side's best run is kept. The same is done for badges with a logo and the dark-mode
style sheet (`?theme=auto&logo=github`) against nginx serving static copies of those
(`vs_nginx_logo`). Afterwards, tallyd's `all` rollup must hold exactly every
view wrk completed (plus at most one in-flight request per connection at the end).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nginx, Tallyd, free_port, quick, report, wrk

IDS = 1000
PATH = "/badge/id%d.svg"
LOGO_QUERY = "?theme=auto&logo=github"
ROUNDS = 3
CONNECTIONS = 64

NGINX_CONF = """
worker_processes auto;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
%(servers)s
}
"""
SERVER = """
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
"""


def main() -> None:
    short = quick()
    seconds = 5 if short else 15

    t = Tallyd()
    nginx = None
    try:
        # Every id viewed once, so the runs measure the steady state of a busy badge.
        root = Path(t.dir) / "static"
        logo_root = Path(t.dir) / "static-logo"
        (root / "badge").mkdir(parents=True)
        (logo_root / "badge").mkdir(parents=True)
        for i in range(1, IDS + 1):
            status, svg = t.request("GET", PATH % i)
            assert status == 200, svg
            (root / "badge" / f"id{i}.svg").write_bytes(svg)
            status, svg = t.request("GET", PATH % i + LOGO_QUERY + "&increment=0")
            assert status == 200 and b"<image" in svg and b"prefers-color-scheme" in svg, svg
            (logo_root / "badge" / f"id{i}.svg").write_bytes(svg)
        time.sleep(0.5)
        port, logo_port = free_port(), free_port()
        servers = SERVER % {"port": port, "root": root}
        servers += SERVER % {"port": logo_port, "root": logo_root}
        nginx = Nginx(NGINX_CONF % {"servers": servers})
        time.sleep(0.3)

        def counted() -> int:
            return int(t.get_json("/api/stats/track/all/hit")["total"])

        before = counted()
        runs: dict[str, list[dict[str, float]]] = {
            "nginx": [],
            "tallyd": [],
            "nginx_logo": [],
            "tallyd_logo": [],
        }
        logo_path = PATH + LOGO_QUERY  # nginx serves the file and ignores the query
        for _ in range(ROUNDS):
            runs["nginx"].append(wrk(f"http://127.0.0.1:{port}", seconds, IDS, PATH))
            runs["tallyd"].append(wrk(f"http://127.0.0.1:{t.port}", seconds, IDS, PATH))
        for _ in range(ROUNDS):
            runs["nginx_logo"].append(wrk(f"http://127.0.0.1:{logo_port}", seconds, IDS, logo_path))
            runs["tallyd_logo"].append(wrk(f"http://127.0.0.1:{t.port}", seconds, IDS, logo_path))
        time.sleep(1.0)  # the last flush
        views = counted() - before
    finally:
        if nginx is not None:
            nginx.stop()
        t.stop()

    counting = runs["tallyd"] + runs["tallyd_logo"]
    sent = sum(r["requests"] for r in counting)
    errors = sum(r["non_2xx"] for r in counting)
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in runs.items()}
    ratio = best["tallyd"]["rps"] / best["nginx"]["rps"]
    logo_ratio = best["tallyd_logo"]["rps"] / best["nginx_logo"]["rps"]
    # wrk stops with up to one request per connection in flight: counted, not completed.
    exact = sent <= views <= sent + len(counting) * CONNECTIONS
    figures = {
        "tallyd_rps": round(best["tallyd"]["rps"]),
        "nginx_rps": round(best["nginx"]["rps"]),
        "p99_ms": round(best["tallyd"]["p99_ms"], 2),
        "nginx_p99_ms": round(best["nginx"]["p99_ms"], 2),
        "tallyd_logo_rps": round(best["tallyd_logo"]["rps"]),
        "nginx_logo_rps": round(best["nginx_logo"]["rps"]),
        "logo_p99_ms": round(best["tallyd_logo"]["p99_ms"], 2),
        "nginx_logo_p99_ms": round(best["nginx_logo"]["p99_ms"], 2),
        "runs_tallyd_logo_rps": [round(r["rps"]) for r in runs["tallyd_logo"]],
        "runs_logo_p99_ms": [round(r["p99_ms"], 2) for r in runs["tallyd_logo"]],
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
        ("logo + theme=auto: tallyd", f"{figures['tallyd_logo_rps']:,} req/s"),
        ("logo + theme=auto: nginx", f"{figures['nginx_logo_rps']:,} req/s"),
        ("logo ratio", f"{logo_ratio:.3f}"),
        ("logo p99", f"{figures['logo_p99_ms']} ms"),
        ("views completed / counted", f"{int(sent):,} / {views:,}  exact: {exact}"),
    ]
    report(
        "badge_http",
        rows,
        figures,
        {"vs_nginx": round(ratio, 3), "vs_nginx_logo": round(logo_ratio, 3)},
    )
    if not exact or errors:
        raise SystemExit("badge views were lost or failed")


if __name__ == "__main__":
    main()
