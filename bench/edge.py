"""The edge mode at nginx's full rate: is every hit nginx serves counted?

    python bench/edge.py [--quick]

nginx is configured from docs/nginx.conf (its ports and directory replaced) and logs
every badge hit to tallyd's syslog socket; `wrk -t2 -c64` asks it for one of 1,000
ids at random, flat out. Then tallyd's `all` rollup must hold every hit nginx
answered, as nginx's own access log file (written beside the syslog line) records
them: counted / sent = 1.0.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, Nginx, Tallyd, free_port, quick, report, wrk

IDS = 1000


def main() -> None:
    short = quick()
    seconds = 5 if short else 15

    syslog = free_port(socket.SOCK_DGRAM)
    t = Tallyd("--syslog", f"udp://127.0.0.1:{syslog}")
    nginx = None
    try:
        badges = Path(t.dir) / "badges"
        badges.mkdir()
        port = free_port()
        conf = (REPO / "docs" / "nginx.conf").read_text()
        conf = conf.replace("127.0.0.1:8081", f"127.0.0.1:{port}")
        conf = conf.replace("127.0.0.1:5140", f"127.0.0.1:{syslog}")
        conf = conf.replace("/var/www/tallyd/badges", str(badges))
        # nginx's own record of what it answered, beside the syslog line: the "sent".
        hits_log = Path(t.dir) / "hits.log"
        conf = conf.replace(
            "access_log syslog:", f"access_log {hits_log} badge;\n    access_log syslog:"
        )
        nginx = Nginx(conf)
        time.sleep(0.3)

        def counted() -> int:
            return int(t.get_json("/api/stats/track/all/hit")["total"])

        def settle(want: int) -> int:
            # Counts arrive over UDP and a flush; wait until they stop changing.
            last, still = -1, 0.0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = counted()
                if now >= want or (now == last and still >= 3.0):
                    return now
                still = still + 0.2 if now == last else 0.0
                last = now
                time.sleep(0.2)
            return counted()

        # Every id once through nginx (a 404 before its first render, still counted).
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(1, IDS + 1):
            client.request("GET", f"/badge.svg?repo=owner/repo{i}")
            client.getresponse().read()
        client.close()
        assert settle(IDS) == IDS, "the first hits were not all counted"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tallyd",
                "render-badges",
                "--store",
                t.store,
                "--out",
                str(badges),
                "--log-level",
                "warning",
            ],
            check=True,
        )
        run = wrk(f"http://127.0.0.1:{port}", seconds, IDS, "/badge.svg?repo=owner/repo%d")
        time.sleep(0.5)  # nginx finishes what was in flight
        with hits_log.open("rb") as f:
            sent = sum(1 for _ in f) - IDS
        views = settle(IDS + sent) - IDS
        drops = [
            line
            for line in t.request("GET", "/metrics")[1].decode().splitlines()
            if line.startswith("tallyd_syslog_kernel_drops_total")
        ]
    finally:
        if nginx is not None:
            nginx.stop()
        t.stop()

    fraction = views / sent if sent else 0.0
    exact = views == sent
    figures = {
        "requests_per_s": round(run["rps"]),
        "requests": sent,
        "wrk_completed": int(run["requests"]),
        "counted": views,
        "counted_fraction": round(fraction, 4),
        "non_2xx": int(run["non_2xx"]),
        "kernel_drops": drops[0].split()[-1] if drops else "n/a",
    }
    rows = [
        ("nginx, static badges + syslog", f"{figures['requests_per_s']:,} req/s"),
        ("hits nginx logged / tallyd counted", f"{sent:,} / {views:,}"),
        ("counted / sent", f"{fraction:.4f}  (target 1.0)  exact: {exact}"),
        ("kernel drops on tallyd's socket", str(figures["kernel_drops"])),
    ]
    report("edge", rows, figures, {"counted_vs_sent": round(fraction, 4)})


if __name__ == "__main__":
    main()
