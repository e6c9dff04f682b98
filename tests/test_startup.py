"""`tallyd serve` started before its store is ready: it waits, then serves, or says why not."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import RedisCluster, RedisServer, Server, free_port, require

pytestmark = pytest.mark.timeout(120)

LATE = 5.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+: ")
ATTEMPT = re.compile(r"is not ready \(attempt (\d+)\)")


def later(start: Callable[[], object]) -> Future[object]:
    """Call `start` in LATE seconds, on a thread; the future raises whatever it raised."""

    def run() -> object:
        time.sleep(LATE)
        return start()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def attempts(log: str) -> list[int]:
    """The attempt numbers logged, after checking that each is one whole line."""
    lines = [line for line in log.splitlines() if "is not ready" in line]
    assert all(LOG_LINE.match(line) for line in lines), lines
    return [int(m.group(1)) for line in lines if (m := ATTEMPT.search(line))]


def count_one_event(server: Server) -> None:
    event = {"type": "pageview", "data": {"account": "late"}, "time": "2013-09-05T14:03:07Z"}
    assert server.post(event, wait="flush").status_code == 202
    assert server.get("/api/stats/track/late/pageview").json()["total"] == 1


def test_waits_for_a_redis_that_starts_late(server_factory: type[Server], tmp_path: Path) -> None:
    redis = RedisServer(require("redis-server"), tmp_path / "redis")
    started = later(redis.start)
    try:
        t0 = time.monotonic()
        server = server_factory(tmp_path, store=redis.url).start()
        waited = time.monotonic() - t0
        started.result(timeout=10)
        count_one_event(server)
        assert server.stop() == 0
    finally:
        started.result(timeout=30)
        redis.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
    tries = attempts(log)
    assert tries == list(range(1, len(tries) + 1)) and len(tries) >= 3, log
    assert waited >= LATE - 1


def test_waits_for_a_cluster_that_forms_late(server_factory: type[Server], tmp_path: Path) -> None:
    cluster = RedisCluster(require("redis-server"), require("redis-cli"), tmp_path / "cluster")
    try:
        # The nodes answer, in cluster mode, but serve no slot until `create`.
        cluster.start_nodes()
        formed = later(cluster.create)
        server = server_factory(tmp_path, store=cluster.url).start()
        formed.result(timeout=60)
        count_one_event(server)
        assert server.stop() == 0
    finally:
        cluster.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
    tries = attempts(log)
    assert tries == list(range(1, len(tries) + 1)) and len(tries) >= 3, log


def serve(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tallyd", "serve", "--http", f"127.0.0.1:{free_port()}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_gives_up_after_store_wait() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    t0 = time.monotonic()
    proc = serve("--store", url, "--store-wait", "2")
    out, _ = proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 1, out
    assert 2 <= took < 8, took
    lines = out.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), out
    assert "Traceback" not in out
    errors = [line for line in lines if " ERROR " in line]
    assert errors == lines[-1:]
    assert f"store {url} is not reachable (" in errors[0] and "attempts in 2." in errors[0]
    tries = attempts(out)
    assert tries == list(range(1, len(tries) + 1)) and len(lines) == len(tries) + 1, out


def test_a_stop_while_waiting_stops_at_once() -> None:
    proc = serve("--store", f"redis://127.0.0.1:{free_port()}/0", "--store-wait", "60")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "is not ready (attempt 1)" in first, first
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 5
    assert "stopped before the store was ready" in out and "Traceback" not in out


def test_a_store_that_never_answers_is_given_up_on_time() -> None:
    # It takes the connection and says nothing: the wait still bounds the start.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    t0 = time.monotonic()
    command = [sys.executable, "-m", "tallyd", "serve", "--http", f"127.0.0.1:{http_port}"]
    proc = subprocess.Popen(
        [*command, "--store", url, "--store-wait", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        # While it waits, the HTTP port is bound but refuses: a probe fails at once.
        time.sleep(1.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", http_port), timeout=2).close()
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        silent.close()
    took = time.monotonic() - t0
    assert proc.returncode == 1, out
    assert 3 <= took < 6, took
    assert "no answer within" in out and "Traceback" not in out


def test_a_part_failing_to_start_unwinds_the_parts_before_it(tmp_path: Path) -> None:
    # The last part to start (syslog) cannot: everything started before it (store,
    # journal, flush loop, HTTP, bus) is stopped in order, and nothing is left held.
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    db = tmp_path / "t.db"
    args = [
        "--store",
        f"sqlite:///{db}",
        "--durable",
        "--zmq-bind",
        f"tcp://127.0.0.1:{free_port()}",
    ]
    try:
        proc = serve(*args, "--syslog", f"udp://127.0.0.1:{taken.getsockname()[1]}")
        out, _ = proc.communicate(timeout=30)
    finally:
        taken.close()
    assert proc.returncode == 1, out
    lines = out.splitlines()
    assert all(LOG_LINE.match(line) for line in lines) and "Traceback" not in out, out
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1 and "cannot open the syslog socket" in errors[0], out
    assert "listening on http://" in out  # HTTP had started, and was stopped again
    # The journal's lock was released and the store closed: the next start runs.
    server = Server(tmp_path, *args[2:], db=db).start()
    try:
        count_one_event(server)
    finally:
        assert server.stop() == 0
