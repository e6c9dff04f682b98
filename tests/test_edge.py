"""The edge mode end to end: a real nginx configured from docs/nginx.conf, logging hits
to tallyd's syslog socket, serving the badges `tallyd render-badges` writes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, require, udp_port, wait_until

pytestmark = pytest.mark.timeout(120)

CONF = Path(__file__).parent.parent / "docs" / "nginx.conf"


class Nginx:
    """docs/nginx.conf on free ports; `tz` sets nginx's time zone (a TZ value), and
    `copy` names a file where nginx also writes each line it sends tallyd."""

    def __init__(
        self,
        tmp: Path,
        port: int,
        syslog_port: int,
        badges: Path,
        tz: str | None = None,
        copy: Path | None = None,
    ) -> None:
        self.binary = require("nginx")
        self.prefix = tmp / "nginx"
        (self.prefix / "logs").mkdir(parents=True)
        conf = CONF.read_text()
        replacements = [
            ("127.0.0.1:8081", f"127.0.0.1:{port}"),
            ("127.0.0.1:5140", f"127.0.0.1:{syslog_port}"),
            ("/var/www/tallyd/badges", str(badges)),
        ]
        if copy is not None:
            replacements.append(
                ("access_log syslog:", f"access_log {copy} badge; access_log syslog:")
            )
        for default, ours in replacements:
            assert default in conf, default
            conf = conf.replace(default, ours)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(conf)
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        # nginx passes TZ on to its workers, which write $time_iso8601 in that zone.
        self.env = {**os.environ, "TZ": tz} if tz is not None else None

    def start(self) -> Nginx:
        globals_ = f"pid {self.prefix}/nginx.pid; error_log {self.prefix}/logs/error.log;"
        if os.geteuid() == 0:
            # Workers would drop to "nobody", who cannot enter pytest's private tmp dirs.
            globals_ += " user root;"
        cmd = [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-g", globals_]
        subprocess.run([*cmd, "-t", "-q"], check=True, capture_output=True, env=self.env)
        subprocess.run(cmd, check=True, env=self.env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        pid = self.prefix / "nginx.pid"
        if pid.exists():
            subprocess.run(["kill", "-QUIT", pid.read_text().strip()], check=False)


def views(port: int, repo: str, n: int) -> list[bytes]:
    """`n` badge views down keep-alive connections; returns the status codes."""
    request = f"GET /badge.svg?repo={repo} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    statuses: list[bytes] = []
    for start in range(0, n, 500):
        batch = min(500, n - start)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request * batch)
            data = b""
            while len(re.findall(rb"HTTP/1\.1 \d{3}", data)) < batch or not data.endswith(
                (b"</svg>", b"</html>\r\n")
            ):
                chunk = sock.recv(1 << 16)
                assert chunk, "nginx closed the connection"
                data += chunk
        statuses += re.findall(rb"HTTP/1\.1 (\d{3})", data)
    return statuses


def render(server: Server, out: Path) -> None:
    cmd = [sys.executable, "-m", "tallyd", "render-badges", "--store", server.store]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, timeout=60)


def test_nginx_edge_counts_every_hit(server_factory: type[Server], tmp_path: Path) -> None:
    syslog = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{syslog}").start()
    badges = tmp_path / "badges"
    badges.mkdir()
    nginx = Nginx(tmp_path, free_port(), syslog, badges).start()
    try:

        def total() -> int:
            r = server.get("/api/stats/track/benwilber%2Fbashids/hit")
            return int(r.json()["total"])

        # A new id: nginx has no file for it yet (404), but the hit is counted.
        assert views(nginx.port, "benwilber/bashids", 1) == [b"404"]
        assert wait_until(total, 1) == 1
        render(server, badges)
        assert (badges / "benwilber%2Fbashids.svg").exists()

        statuses = views(nginx.port, "benwilber/bashids", 4_999)
        assert statuses == [b"200"] * 4_999
        assert wait_until(total, 5_000) == 5_000
        time.sleep(0.5)
        assert total() == 5_000  # exactly: no hit lost, none twice

        render(server, badges)
        r = httpx.get(f"{nginx.url}/badge.svg", params={"repo": "benwilber/bashids"})
        assert r.status_code == 200
        assert 'aria-label="hits: 5,000"' in r.text
        assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
        assert r.headers["cache-control"] == "max-age=0, no-cache, no-store, must-revalidate"
        assert r.headers["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
        # Ids that could name another path are refused before they reach the disk.
        bad = httpx.get(f"{nginx.url}/badge.svg?repo=../../etc/passwd")
        assert bad.status_code == 400
        # Escaped by the client, the same id is only an odd file name: not there.
        odd = httpx.get(f"{nginx.url}/badge.svg", params={"repo": "../../etc/passwd"})
        assert odd.status_code == 404
    finally:
        nginx.stop()


def test_render_badges_writes_changed_files_only(server: Server, tmp_path: Path) -> None:
    ids = ["a/b", "..", "x y", "ünï", "100%", "plain"]
    server.post([{"event": "hit", "account": i} for i in ids], wait="flush")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tallyd", "render-badges", "--store", server.store]
    cmd += ["--out", str(out), "--style", "for-the-badge", "--label", "views"]

    def run() -> str:
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
        return done.stderr

    assert "6 badges, 6 written" in run()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["a%2Fb.svg", "...svg", "x%20y.svg", "%C3%BCn%C3%AF.svg", "100%25.svg", "plain.svg"]
    )
    assert 'aria-label="VIEWS: 1"' in (out / "a%2Fb.svg").read_text()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert "6 badges, 0 written" in run()
    server.post([{"event": "hit", "account": "a/b"}], wait="flush")
    assert "6 badges, 1 written" in run()
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert [n for n in after if after[n] != before[n]] == ["a%2Fb.svg"]
    assert 'aria-label="VIEWS: 2"' in (out / "a%2Fb.svg").read_text()
    bad = subprocess.run([*cmd, "--metric", "weekly"], capture_output=True, text=True)
    assert bad.returncode == 2 and "weekly" in bad.stderr
