"""A store that fails under load: a full disk, a file deleted or read-only, Redis
stopped or frozen. Nothing acknowledged is lost or doubled, the log says what the
store said (once per attempt), ingest keeps going and memory stays bounded."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Producer, RedisServer, Server, require, wait_until

pytestmark = pytest.mark.timeout(120)


def rss_mb(server: Server) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def total(server: Server) -> int:
    got: int = server.get("/api/stats/track/all/pageview").json()["total"]
    return got


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    """A small filesystem of its own (CI runs as root, as this machine does)."""
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_loses_nothing_and_says_so(
    server_factory: type[Server], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "32m") as disk:
        filler = disk / "filler"
        server = server_factory(tmp_path, db=disk / "tallyd.db").start()
        # What is left of the disk after the empty database: nearly nothing.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 256 * 1024))
        with Producer(server, threads=2, batch=200, accounts=3_000) as producer:
            wait_until(lambda: server.log.read_text().count("disk is full"), 1, timeout=30)
            time.sleep(1.0)  # the store keeps failing; ingest keeps accepting
            peak = rss_mb(server)
        acked = producer.acked
        assert not producer.errors, producer.errors[:3]
        assert acked > 10_000
        assert peak < 400
        filler.unlink()  # space again: the batches in waiting go in
        assert wait_until(lambda: total(server), acked, timeout=30) == acked
        assert server.stop() == 0
        log = server.log.read_text()
        assert "cannot rollback" not in log and "Traceback" not in log
        assert "every count written" in log
        # One line an attempt: the back-off doubles to 5 s, so a few, not hundreds.
        assert log.count("flush failed") < 20


def test_a_deleted_database_file_is_noticed(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--shutdown-timeout", "20").start()
    with Producer(server, threads=1, batch=100, accounts=50):
        time.sleep(0.5)
        server.db.unlink()
        deleted = time.monotonic()
        health = wait_until(lambda: int(server.get("/healthz").status_code == 503), 1, timeout=5)
        noticed = time.monotonic() - deleted
    assert health == 1 and noticed < 1.5
    body = server.get("/healthz").json()
    assert "deleted" in body["detail"] and str(tmp_path) not in body["detail"]
    # A read says so too, and opens no new, empty file in its place.
    r = server.get("/api/stats/track/all/pageview")
    assert r.status_code == 503 and "deleted" in r.json()["detail"], r.text
    assert not server.db.exists()
    time.sleep(3.0)  # retries go on: a back-off from 0.1 s would have logged 5 lines
    assert "deleted" in server.get("/healthz").json()["detail"]
    asked = time.monotonic()
    assert server.stop() == 2
    # The stop does not wait out its 20 s for a file that will not come back.
    assert time.monotonic() - asked < 5
    log = server.log.read_text()
    assert "every count written" not in log and "cells NOT written" in log
    assert "Traceback" not in log
    # Waiting will not bring the file back: one line says so, not one per attempt.
    assert log.count("flush failed") == 1, log


def test_a_read_only_database_is_refused_at_start(
    server_factory: type[Server], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "4m") as disk:
        server = server_factory(tmp_path, db=disk / "tallyd.db").start()
        server.post([{"event": "pageview", "account": "a", "time": 1_378_389_787}])
        server.stop(signal.SIGKILL)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(RuntimeError, match="tallyd exited early"):
            server.start()
        last = server.log.read_text().splitlines()[-1]
        assert "ERROR" in last and "readonly" in last, last
        assert "Traceback" not in server.log.read_text()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and freeze."""
    server = RedisServer(require("redis-server"), tmp_path / "redis").start()
    yield server
    if server.proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


def rate(producer: Producer, seconds: float) -> float:
    before = producer.acked
    time.sleep(seconds)
    return (producer.acked - before) / seconds


def test_redis_stopped_under_load(
    server_factory: type[Server], tmp_path: Path, own_redis: RedisServer
) -> None:
    server = server_factory(tmp_path, store=own_redis.url).start()
    with Producer(server, threads=2, batch=100, accounts=500) as producer:
        time.sleep(1.0)
        normal = rate(producer, 2.0)
        own_redis.kill()
        time.sleep(1.0)
        during = rate(producer, 8.0)
        own_redis.start()
        time.sleep(1.0)
    acked = producer.acked
    assert not producer.errors, producer.errors[:3]
    assert during >= 0.5 * normal, (during, normal)
    assert wait_until(lambda: total(server), acked, timeout=30) == acked
    time.sleep(0.5)
    assert total(server) == acked  # nothing doubled either
    log = server.log.read_text()
    # One line per back-off step (0.1, 0.2, … 5 s): a handful over 10 s, not hundreds.
    assert 1 <= log.count("flush failed") <= 12
    assert str(own_redis.port) not in server.get("/healthz").text


def test_redis_frozen_keeps_memory_bounded(
    server_factory: type[Server], tmp_path: Path, own_redis: RedisServer
) -> None:
    server = server_factory(tmp_path, store=own_redis.url).start()
    assert own_redis.proc is not None
    with Producer(server, threads=2, batch=100, accounts=20_000) as producer:
        time.sleep(1.0)
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        peak = 0.0
        for _ in range(24):
            time.sleep(0.5)
            peak = max(peak, rss_mb(server))
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        for _ in range(6):
            time.sleep(0.5)
            peak = max(peak, rss_mb(server))
    acked = producer.acked
    assert peak < 400, peak
    assert wait_until(lambda: total(server), acked, timeout=40) == acked


def test_wait_flush_answers_within_the_wait_timeout(
    server_factory: type[Server], tmp_path: Path, own_redis: RedisServer
) -> None:
    server = server_factory(tmp_path, "--wait-timeout", "1", store=own_redis.url).start()
    event = [{"event": "pageview", "account": "a", "time": 1_378_389_787}]
    r = server.client.post("/api/events", json=event, params={"wait": "flush"})
    assert r.status_code == 202 and r.json()["stored"] is True
    own_redis.kill()
    t0 = time.monotonic()
    r = server.client.post("/api/events", json=event, params={"wait": "flush"})
    took = time.monotonic() - t0
    assert r.status_code == 202 and r.json()["accepted"] == 1 and r.json()["stored"] is False
    assert 0.9 <= took < 3
    assert str(own_redis.port) not in r.text
    own_redis.start()
    assert wait_until(lambda: total(server), 2, timeout=30) == 2


@pytest.mark.parametrize(
    "error, shown",
    [
        ("Error 111 connecting to 127.0.0.1:6379. Connection refused.", "connecting to …."),
        ("Error connecting to redis.internal:6380", "Error connecting to …"),
        ("[::1]:7000 refused", "… refused"),
        ("sqlite: unable to open database file /var/lib/tallyd/x.db", "database file …"),
        ("sqlite: database or disk is full", "sqlite: database or disk is full"),
    ],
)
def test_a_store_error_shown_to_clients_names_no_address(error: str, shown: str) -> None:
    from tallyd.stores import public_error

    assert shown in public_error(error)
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|/var/", public_error(error))


def test_an_idle_service_notices_the_store_is_gone_and_back(
    server_factory: type[Server], tmp_path: Path, own_redis: RedisServer
) -> None:
    # Nothing to write: the flush loop asks the store itself, so /healthz does not
    # say "ok" through an outage until the next count fails to be written.
    server = server_factory(tmp_path, store=own_redis.url).start()

    def health() -> int:
        return server.client.get("/healthz").status_code

    assert health() == 200
    own_redis.stop()
    deadline = time.monotonic() + 10
    while health() != 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    r = server.client.get("/healthz")
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
    own_redis.start()
    deadline = time.monotonic() + 10
    while health() != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health() == 200
