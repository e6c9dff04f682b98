"""Shared by the benchmark scripts: a tallyd process, timing, the output contract."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def quick() -> bool:
    """The one command-line option every bench takes: `--quick`, under 40 s."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a shorter run, under 40 s")
    return bool(ap.parse_args().quick)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


class Tallyd:
    """`tallyd serve` in a child process, on a fresh SQLite file unless told otherwise."""

    def __init__(self, *args: str, store: str | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="tallyd-bench-")
        self.port = free_port()
        self.store = store or f"sqlite:///{self.dir}/bench.db"
        cmd = [
            sys.executable,
            "-m",
            "tallyd",
            "serve",
            "--store",
            self.store,
            "--http",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            *args,
        ]
        self.log = open(Path(self.dir) / "tallyd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tallyd did not start")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        c = self.conn()
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))]


def report(
    bench: str, rows: list[tuple[str, str]], figures: dict[str, Any], ratios: dict[str, Any]
) -> None:
    """The readable table, then the one-line JSON the SPEC asks for, last."""
    width = max(len(k) for k, _ in rows)
    print(f"\n{bench} — {machine()}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(json.dumps({"bench": bench, "figures": figures, "ratios": ratios}))


def binary(name: str) -> str:
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit(f"{name} is not installed (./scripts/test.sh installs it)")


class Nginx:
    """nginx on a private prefix, from a complete nginx.conf text."""

    def __init__(self, conf: str) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="tallyd-nginx-"))
        (self.prefix / "logs").mkdir()
        (self.prefix / "nginx.conf").write_text(conf)
        settings = f"pid {self.prefix}/nginx.pid; error_log {self.prefix}/logs/error.log;"
        if os.geteuid() == 0:
            settings += " user root;"  # workers could not read the private temp dirs
        cmd = [binary("nginx"), "-p", str(self.prefix), "-c", "nginx.conf", "-g", settings]
        subprocess.run(cmd, check=True)

    def stop(self) -> None:
        pid = self.prefix / "nginx.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGQUIT)


# wrk picks one of `ids` badge paths at random for every request.
WRK_SCRIPT = """
local ids = %d
local fmt = "%s"
request = function()
  return wrk.format("GET", string.format(fmt, math.random(ids)))
end
"""


def wrk(url: str, seconds: float, ids: int, path_format: str) -> dict[str, float]:
    """Requests/s, p99 latency and completed requests of one `wrk -t2 -c64` run."""
    script = Path(tempfile.mkdtemp(prefix="tallyd-wrk-")) / "ids.lua"
    script.write_text(WRK_SCRIPT % (ids, path_format))
    out = subprocess.run(
        [binary("wrk"), "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = {"non_2xx": 0.0}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(words[1])
        elif words[:1] == ["99%"]:
            figures["p99_ms"] = _ms(words[1])
        elif "requests in" in line:
            figures["requests"] = float(words[0])
        elif line.strip().startswith("Non-2xx"):
            figures["non_2xx"] = float(words[-1])
    return figures


def _ms(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)
