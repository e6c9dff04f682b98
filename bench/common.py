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
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from corpus import Counts

REPO = Path(__file__).resolve().parent.parent


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def arguments(shapes: bool = False) -> argparse.Namespace:
    """The command line: `--quick` (under 40 s), which every bench takes, and for
    the ingest benches `--shape`: the realistic corpus, tallyd's minimal events, or both."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a shorter run, under 40 s")
    if shapes:
        ap.add_argument(
            "--shape",
            choices=("both", "realistic", "minimal"),
            default="both",
            help="events sent: the realistic corpus (bench/corpus.py), tallyd's minimal "
            "events, or both, each against its own reference (default: both)",
        )
        ap.add_argument(
            "--durable",
            action="store_true",
            help="also run tallyd with --durable in every round, and report "
            "durable_vs_plain (its rate over the plain run's of the same round)",
        )
    return ap.parse_args()


def quick() -> bool:
    return bool(arguments().quick)


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

    def __init__(self, *args: str, store: str | None = None, durable: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="tallyd-bench-")
        if durable:
            args = (*args, "--durable", "--journal-dir", f"{self.dir}/journal")
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


class StoreCounts:
    """A store's counter hashes, read directly (the SQLite file, or Redis), not
    through tallyd."""

    def __init__(self, url: str) -> None:
        if url.startswith("redis"):
            import redis

            self.redis: Any = redis.Redis.from_url(url)
        else:
            self.redis = None
            self.db = sqlite3.connect(url.removeprefix("sqlite:///"))

    def rollup(self, types: Iterable[str], year: str) -> int:
        """Events of these types in `year`, as the `all` rollup holds them."""
        keys = [f"all/{quote(t, safe='')}" for t in types]
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                pipe.hget(k, year)
            return sum(int(v or 0) for v in pipe.execute())
        row = self.db.execute(
            "SELECT coalesce(sum(value), 0) FROM counters WHERE field = ? AND key IN "
            f"({','.join('?' * len(keys))})",
            (year, *keys),
        ).fetchone()
        return int(row[0])

    def hashes(self) -> dict[str, dict[str, int]]:
        """Every counter hash (a key with a '/' and no ':'): key → field → value."""
        out: dict[str, dict[str, int]] = {}
        if self.redis is None:
            for key, field, value in self.db.execute("SELECT key, field, value FROM counters"):
                if ":" not in key:
                    out.setdefault(key, {})[field] = int(value)
            return out
        keys = [k.decode() for k in self.redis.scan_iter(count=1000) if b"/" in k and b":" not in k]
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        for k, fields in zip(keys, pipe.execute(), strict=True):
            out[k] = {f.decode(): int(v) for f, v in fields.items()}
        return out

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
        else:
            self.db.close()


def until_counted(store: StoreCounts, types: Iterable[str], n: int) -> float:
    """Wait until the store's 2013 rollup holds `n` events; when it did (perf_counter).
    Fails once none more have been counted for 30 s."""
    counted, progress = 0, time.perf_counter()
    while counted < n:
        time.sleep(0.005)
        now = store.rollup(types, "2013")
        if now > counted:
            counted, progress = now, time.perf_counter()
        elif time.perf_counter() - progress > 30:
            raise AssertionError(f"{counted:,} of {n:,} counted, none more for 30 s")
    return time.perf_counter()


def check_counts(store: StoreCounts, counts: Counts) -> None:
    """Hold the store to `counts` exactly: every (account, type) total, every
    (account, type, day) and the `all` rollup of each type. (Hours are not
    compared: the corpus is dated 2013, and tallyd does not write a day's hours
    past their retention, 400 days by default.)"""
    totals: Counter[tuple[str, str]] = Counter()
    days: Counter[tuple[str, str, date]] = Counter()
    rollup: Counter[str] = Counter()
    for key, fields in store.hashes().items():
        parts = [unquote(p) for p in key.split("/")]
        if len(parts) == 2 and parts[0] == "all":
            rollup[parts[1]] += sum(fields.values())
        elif len(parts) == 2:
            totals[parts[0], parts[1]] += sum(fields.values())
        elif len(parts) == 4 and parts[0] != "all":
            account, kind, y, m = parts
            for d, k in fields.items():
                days[account, kind, date(int(y), int(m), int(d))] += k
    for what, got, want in (
        ("(account, type) totals", totals, counts.totals),
        ("(account, type, day) totals", days, counts.days()),
        ("`all` totals per type", rollup, counts.by_type()),
    ):
        if got != want:
            wrong = sorted(
                (k, got.get(k, 0), want.get(k, 0))
                for k in set(got) | set(want)
                if got.get(k, 0) != want.get(k, 0)
            )
            raise AssertionError(
                f"{what}: {len(wrong)} differ, e.g. (key, stored, sent) {wrong[:5]}"
            )


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


# wrk's threads (`-t`): a script may need to know how many share the work.
WRK_THREADS = 2
# wrk picks one of `ids` badge paths at random for every request.
WRK_SCRIPT = """
local ids = %(ids)d
local fmt = "%(path)s"
request = function()
  return wrk.format("GET", string.format(fmt, math.random(ids)))
end
"""


def wrk(
    url: str, seconds: float, ids: int, path_format: str, script: str = WRK_SCRIPT
) -> dict[str, float]:
    """Requests/s, p99 latency and completed requests of one `wrk -t2 -c64` run;
    `script` is Lua with `%(ids)d`, `%(path)s` and `%(threads)d` to fill in."""
    lua = Path(tempfile.mkdtemp(prefix="tallyd-wrk-")) / "ids.lua"
    lua.write_text(script % {"ids": ids, "path": path_format, "threads": WRK_THREADS})
    out = subprocess.run(
        [
            binary("wrk"),
            f"-t{WRK_THREADS}",
            "-c64",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
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
