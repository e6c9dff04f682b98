"""Graceful stop: every event acknowledged before SIGTERM is counted after restart."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import Producer, Server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_loses_nothing(
    server_factory: type[Server], tmp_path: Path, sig: int
) -> None:
    # A long flush interval: nearly everything is still in memory when the signal lands.
    server = server_factory(tmp_path, "--flush-interval", "30").start()
    with Producer(server, threads=3, batch=100, accounts=50) as producer:
        time.sleep(1.5)
        assert server.stop(sig) == 0
    acked = producer.acked
    assert acked > 1000 and not producer.errors

    server.start()
    got = server.get("/api/stats/track/all/pageview").json()
    assert got["total"] == acked
    log = server.log.read_text()
    assert "every count written" in log and "Traceback" not in log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_signal_sent_twice_at_once_is_one_stop(
    server_factory: type[Server], tmp_path: Path, workers: str
) -> None:
    # As `timeout` does: the process, then its process group, a moment apart. The
    # second must not be taken as "again, to force" (which drops unflushed counts).
    server = server_factory(tmp_path, "--flush-interval", "30", "--workers", workers).start()
    events = [{"event": "pageview", "account": f"a{i % 7}"} for i in range(700)]
    assert server.post(events).json()["accepted"] == 700
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.002)
    assert server.stop(signal.SIGTERM) == 0
    log = server.log.read_text()
    assert "counts are lost" not in log and "every count written" in log, log
    server.start()
    assert server.get("/api/stats/track/all/pageview").json()["total"] == 700


def test_counts_survive_restarts(server_factory: type[Server], tmp_path: Path) -> None:
    # Minutes kept forever: the answer checked below is an hour of 2013.
    server = server_factory(tmp_path, "--retention-minutes", "0").start()
    for round_ in range(3):
        assert (
            server.post(
                [{"event": "e", "account": "a", "time": "2013-09-05T14:03:07Z"}] * 5
            ).status_code
            == 202
        )
        server.restart()
        assert server.get("/api/stats/track/a/e/2013/09/05/14").json()["data"]["3"] == 5 * (
            round_ + 1
        )


def upload(events: int) -> tuple[bytes, bytes]:
    """A POST of `events` NDJSON pageviews: its head and its body."""
    line = b'{"event": "pageview", "account": "up", "time": "2013-09-05T14:03:07Z"}\n'
    body = line * events
    head = (
        b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    return head, body


def answer_of(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_stop_during_an_upload_answers_it(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path).start()
    assert server.proc is not None
    head, body = upload(2000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[:1000])
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Stopping: new connections are refused, the upload under way is read on.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        sock.sendall(body[1000:])
        got = answer_of(sock)
    assert got.startswith(b"HTTP/1.1 202 ") and b"connection: close\r\n" in got, got[:300]
    assert server.proc.wait(30) == 0
    assert "every count written" in server.log.read_text()
    server.start()
    assert server.get("/api/stats/track/up/pageview").json()["total"] == 2000


def test_a_stop_waits_for_an_upload_at_most_the_shutdown_timeout(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--shutdown-timeout", "1").start()
    assert server.proc is not None
    head, body = upload(100)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[:10])  # and never the rest
        time.sleep(0.3)
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert answer_of(sock) == b""  # cut off, not answered: nothing was counted
        assert server.proc.wait(30) == 0
    assert time.monotonic() - began < 5
    log = server.log.read_text()
    assert "1 connection(s) still busy after 1 s: closing them" in log
    assert "every count written" in log and "Traceback" not in log
