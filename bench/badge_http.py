"""Badge requests per second, counting, against nginx serving the same SVGs as files.

    python bench/badge_http.py [--quick]

`wrk -t2 -c64` asks for one of 1,000 badge ids at random. tallyd counts every view
and draws the badge (SQLite store, the default); nginx serves a static copy of each
badge with the same cache headers — the second seed's architecture without counting.
The runs alternate (nginx, tallyd, nginx, tallyd, ...) so machine noise hits both;
each side's best run is kept. The same is done for badges with a logo and the dark-mode
style sheet (`?theme=auto&logo=github`) against nginx serving static copies of those
(`vs_nginx_logo`), and for 1,000 ids tallyd has never seen (`vs_nginx_cold`): each
round a new prefix, and wrk walks the ids in order so the first 1,000 requests are
each an id's first view (a store read), the rest views of those ids.
Afterwards, tallyd's `all` rollup must hold exactly every view wrk completed in
each part (plus at most one in-flight request per connection per run).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nginx, Tallyd, free_port, quick, report, wrk

IDS = 1000
PATH = "/badge/id%d.svg"
# A round's ids never seen before: its own prefix (the round's number).
COLD_PATH = "/badge/r%did%%d.svg"
LOGO_QUERY = "?theme=auto&logo=github"
ROUNDS = 3
CONNECTIONS = 64

# Each wrk thread walks the ids from its own offset, a step of the thread count,
# so between them the first `ids` requests ask for every id once.
WALK_SCRIPT = """
local ids = %(ids)d
local fmt = "%(path)s"
local started = 0
function setup(thread)
  thread:set("n", started)
  started = started + 1
end
request = function()
  local id = n %% ids + 1
  n = n + %(threads)d
  return wrk.format("GET", string.format(fmt, id))
end
"""

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
            # nginx serves each cold round's ids as the same files.
            for r in range(1, ROUNDS + 1):
                os.link(root / "badge" / f"id{i}.svg", root / "badge" / f"r{r}id{i}.svg")
        time.sleep(0.5)
        port, logo_port = free_port(), free_port()
        servers = SERVER % {"port": port, "root": root}
        servers += SERVER % {"port": logo_port, "root": logo_root}
        nginx = Nginx(NGINX_CONF % {"servers": servers})
        time.sleep(0.3)
        plain, logo = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{logo_port}"
        served = f"http://127.0.0.1:{t.port}"

        def counted() -> int:
            return int(t.get_json("/api/stats/track/all/hit")["total"])

        runs: dict[str, list[dict[str, float]]] = {
            "nginx": [],
            "tallyd": [],
            "nginx_logo": [],
            "tallyd_logo": [],
            "nginx_cold": [],
            "tallyd_cold": [],
        }
        # Views counted in each part: cached ids, then ids never seen.
        views: dict[str, int] = {}
        before = counted()
        logo_path = PATH + LOGO_QUERY  # nginx serves the file and ignores the query
        for _ in range(ROUNDS):
            runs["nginx"].append(wrk(plain, seconds, IDS, PATH))
            runs["tallyd"].append(wrk(served, seconds, IDS, PATH))
        for _ in range(ROUNDS):
            runs["nginx_logo"].append(wrk(logo, seconds, IDS, logo_path))
            runs["tallyd_logo"].append(wrk(served, seconds, IDS, logo_path))
        time.sleep(1.0)  # the last flush
        views["cached"] = counted() - before
        before += views["cached"]
        for r in range(1, ROUNDS + 1):
            runs["nginx_cold"].append(wrk(plain, seconds, IDS, COLD_PATH % r, WALK_SCRIPT))
            runs["tallyd_cold"].append(wrk(served, seconds, IDS, COLD_PATH % r, WALK_SCRIPT))
        time.sleep(1.0)
        views["cold"] = counted() - before
    finally:
        if nginx is not None:
            nginx.stop()
        t.stop()

    parts = {"cached": runs["tallyd"] + runs["tallyd_logo"], "cold": runs["tallyd_cold"]}
    sent = {part: int(sum(r["requests"] for r in rs)) for part, rs in parts.items()}
    # wrk stops with up to one request per connection in flight: counted, not completed.
    exact = {
        part: sent[part] <= views[part] <= sent[part] + len(rs) * CONNECTIONS
        for part, rs in parts.items()
    }
    errors = int(sum(r["non_2xx"] for rs in parts.values() for r in rs))
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in runs.items()}
    ratio = best["tallyd"]["rps"] / best["nginx"]["rps"]
    logo_ratio = best["tallyd_logo"]["rps"] / best["nginx_logo"]["rps"]
    cold_ratio = best["tallyd_cold"]["rps"] / best["nginx_cold"]["rps"]
    figures = {
        "tallyd_rps": round(best["tallyd"]["rps"]),
        "nginx_rps": round(best["nginx"]["rps"]),
        "p99_ms": round(best["tallyd"]["p99_ms"], 2),
        "nginx_p99_ms": round(best["nginx"]["p99_ms"], 2),
        "tallyd_logo_rps": round(best["tallyd_logo"]["rps"]),
        "nginx_logo_rps": round(best["nginx_logo"]["rps"]),
        "logo_p99_ms": round(best["tallyd_logo"]["p99_ms"], 2),
        "nginx_logo_p99_ms": round(best["nginx_logo"]["p99_ms"], 2),
        "tallyd_cold_rps": round(best["tallyd_cold"]["rps"]),
        "nginx_cold_rps": round(best["nginx_cold"]["rps"]),
        "p99_ms_cold": round(best["tallyd_cold"]["p99_ms"], 2),
        "nginx_p99_ms_cold": round(best["nginx_cold"]["p99_ms"], 2),
        "runs_tallyd_logo_rps": [round(r["rps"]) for r in runs["tallyd_logo"]],
        "runs_logo_p99_ms": [round(r["p99_ms"], 2) for r in runs["tallyd_logo"]],
        "runs_tallyd_cold_rps": [round(r["rps"]) for r in runs["tallyd_cold"]],
        "runs_nginx_cold_rps": [round(r["rps"]) for r in runs["nginx_cold"]],
        "runs_p99_ms_cold": [round(r["p99_ms"], 2) for r in runs["tallyd_cold"]],
        "requests": sent["cached"],
        "counted": views["cached"],
        "requests_cold": sent["cold"],
        "counted_cold": views["cold"],
        "non_2xx": errors,
        "runs_tallyd_rps": [round(r["rps"]) for r in runs["tallyd"]],
        "runs_nginx_rps": [round(r["rps"]) for r in runs["nginx"]],
        "runs_p99_ms": [round(r["p99_ms"], 2) for r in runs["tallyd"]],
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
        ("views completed / counted", f"{sent['cached']:,} / {views['cached']:,}"),
        (f"{IDS:,} new ids: tallyd", f"{figures['tallyd_cold_rps']:,} req/s"),
        (f"{IDS:,} new ids: nginx", f"{figures['nginx_cold_rps']:,} req/s"),
        ("new ids ratio", f"{cold_ratio:.3f}  (target ≥ 0.4)"),
        ("new ids p99", f"{figures['p99_ms_cold']} ms  (target ≤ 10 ms)"),
        ("new ids: completed / counted", f"{sent['cold']:,} / {views['cold']:,}"),
        ("every view counted", f"cached: {exact['cached']}, new ids: {exact['cold']}"),
    ]
    report(
        "badge_http",
        rows,
        figures,
        {
            "vs_nginx": round(ratio, 3),
            "vs_nginx_logo": round(logo_ratio, 3),
            "vs_nginx_cold": round(cold_ratio, 3),
        },
    )
    if not all(exact.values()) or errors:
        raise SystemExit("badge views were lost or failed")


if __name__ == "__main__":
    main()
