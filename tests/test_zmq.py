"""ZeroMQ ingest with real sockets against a real `tallyd serve`."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import zmq

from tests.conftest import Server, free_port, wait_until

pytestmark = pytest.mark.timeout(120)

T = 1_378_389_787  # 2013-09-05T14:03:07Z


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.destroy(linger=0)


def xpub(ctx: zmq.Context[zmq.Socket[bytes]], port: int, bind: bool = True) -> zmq.Socket[bytes]:
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.SNDHWM, 0)
    (s.bind if bind else s.connect)(f"tcp://127.0.0.1:{port}")
    return s


def subscribed(s: zmq.Socket[bytes], timeout: float = 15) -> None:
    assert s.poll(int(timeout * 1000)), "tallyd never subscribed"
    s.recv()


def connected(
    factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]], *flags: str
) -> tuple[Server, zmq.Socket[bytes]]:
    """A tallyd subscribed (`--zmq`, connecting) to a fresh publisher of ours."""
    port = free_port()
    pub = xpub(ctx, port)
    server = factory(tmp_path, "--zmq", f"tcp://127.0.0.1:{port}", *flags).start()
    subscribed(pub)
    return server, pub


def event(account: str, i: int = 0, **extra: object) -> bytes:
    return orjson.dumps({"type": "pageview", "data": {"account": account}, "time": T + i, **extra})


def total(server: Server, account: str = "all", event_: str = "pageview") -> int:
    got: int = server.get(f"/api/stats/track/{account}/{event_}").json()["total"]
    return got


def wait_total(
    server: Server, want: int, account: str = "all", event_: str = "pageview", timeout: float = 30
) -> int:
    return wait_until(lambda: total(server, account, event_), want, timeout)


def test_three_frame_formats_and_the_seed_flag(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    port = free_port()
    pub = xpub(ctx, port)
    server = server_factory(tmp_path, f"--zmsocket=127.0.0.1:{port}").start()
    subscribed(pub)
    pub.send(b"pageview " + event("one-frame"))
    pub.send_multipart([b"pageview", event("two-frames")])
    pub.send(event("bare"))
    pub.send(
        b"pageview " + orjson.dumps([orjson.loads(event("array")), orjson.loads(event("array"))])
    )
    assert wait_total(server, 5) == 5
    for account, n in [("one-frame", 1), ("two-frames", 1), ("bare", 1), ("array", 2)]:
        assert total(server, account) == n


def test_bind_and_several_publishers(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    port = free_port()
    server = server_factory(tmp_path, "--zmq-bind", f"tcp://127.0.0.1:{port}").start()
    pubs = [xpub(ctx, port, bind=False) for _ in range(3)]
    for p in pubs:
        subscribed(p)
    for k, p in enumerate(pubs):
        for i in range(1000):
            p.send(b"pageview " + event(f"pub{k}", i, seq=i + 1, publisher=f"p{k}"))
    assert wait_total(server, 3000) == 3000
    assert [total(server, f"pub{k}") for k in range(3)] == [1000, 1000, 1000]
    assert server.metric("tallyd_zmq_seq_gaps_total") == 0


def test_topic_filter(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server, pub = connected(server_factory, tmp_path, ctx, "--zmq-topic", "order")
    pub.send(b"pageview " + event("a"))
    pub.send(
        b"order "
        + orjson.dumps({"type": "order", "data": {"account": "a", "status": "paid"}, "time": T})
    )
    pub.send(
        b"orders.eu "
        + orjson.dumps({"type": "order", "data": {"account": "b", "status": "paid"}, "time": T})
    )
    assert wait_total(server, 2, event_="order") == 2
    assert total(server, "all", "pageview") == 0
    assert server.get("/api/stats/funnels/all/order/2013").json()["data"] == {"paid": 2}


def test_malformed_frames_are_rejected_and_counted(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server, pub = connected(server_factory, tmp_path, ctx)
    pub.send(b"pageview {not json")
    pub.send(b"garbage")
    pub.send(b"")
    pub.send_multipart([b"a", b"b", b"c"])
    pub.send(b'pageview {"type": "pageview"}')
    pub.send(b'pageview {"type": "pageview", "data": {"account": "all"}}')
    pub.send(b"pageview " + event("good"))
    assert wait_total(server, 1) == 1
    time.sleep(0.3)
    text = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="zmq",reason="invalid_json"} 3' in text
    assert 'tallyd_events_rejected_total{source="zmq",reason="bad_frames"} 1' in text
    assert 'tallyd_events_rejected_total{source="zmq",reason="missing_account"} 1' in text
    assert 'tallyd_events_rejected_total{source="zmq",reason="reserved_account"} 1' in text
    assert total(server) == 1
    assert server.get("/healthz").status_code == 200
    assert "Traceback" not in server.log.read_text()


def test_seq_gap_is_detected(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server, pub = connected(server_factory, tmp_path, ctx)
    for seq in [1, 2, 3, 7, 8, 20]:
        pub.send(b"pageview " + event("a", seq, seq=seq, publisher="p1"))
    assert wait_total(server, 6) == 6
    assert server.metric("tallyd_zmq_seq_gaps_total") == 2
    assert server.metric("tallyd_zmq_seq_missing_total") == 3 + 11
    assert "seq gap from publisher 'p1': 3 message(s) missing (3 → 7)" in server.log.read_text()


def test_emit_100k_counted_exactly(server_factory: type[Server], tmp_path: Path) -> None:
    port = free_port()
    server = server_factory(tmp_path, "--zmq", f"tcp://127.0.0.1:{port}").start()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tallyd",
            "emit",
            "--zmq",
            f"tcp://127.0.0.1:{port}",
            "--bind",
            "-n",
            "100000",
            "--accounts",
            "300",
            "--dist",
            "zipf",
            "--events",
            "pageview,order",
            "--from",
            "2013-01-01T00:00:00Z",
            "--to",
            "2014-12-31T23:59:59Z",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    sent = orjson.loads(out.stdout.splitlines()[-1])
    assert sent["sent"] == 100_000
    assert wait_total(server, sent["by_event"]["pageview"]) == sent["by_event"]["pageview"]
    assert (
        wait_total(server, sent["by_event"]["order"], event_="order") == sent["by_event"]["order"]
    )
    for account in ["acct0", "acct1", "acct299"]:
        want = sent["by_account"].get(account, 0)
        got = total(server, account, "pageview") + total(server, account, "order")
        assert got == want, account
    assert server.metric("tallyd_zmq_seq_gaps_total") == 0


def test_sigterm_mid_stream_loses_nothing_received(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server, pub = connected(server_factory, tmp_path, ctx, "--flush-interval", "30")
    for i in range(50_000):
        pub.send(b"pageview " + event(f"a{i % 100}", i % 3600))
    time.sleep(0.2)
    assert server.stop(signal.SIGTERM) == 0
    log = server.log.read_text()
    m = re.search(r"accepted: zmq=(\d+)", log)
    assert m, log
    received = int(m.group(1))
    assert received > 0
    server.start()
    assert total(server) == received


def test_a_pause_writes_the_burst_before_the_interval(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # With a minute between scheduled flushes, only the pause after a burst writes it.
    server, pub = connected(server_factory, tmp_path, ctx, "--flush-interval", "60")
    for i in range(2000):
        pub.send(b"pageview " + event(f"acct{i % 7}", i))
    wait_until(lambda: server.metric("tallyd_zmq_received_total"), 2000.0, timeout=10)
    deadline = time.monotonic() + 10
    while server.metric("tallyd_pending_cells") and time.monotonic() < deadline:
        time.sleep(0.02)
    db = sqlite3.connect(server.db)
    row = db.execute(
        "SELECT value FROM counters WHERE key = 'all/pageview/2013' AND field = '09'"
    ).fetchone()
    db.close()
    assert row == (2000,)
    assert server.metric("tallyd_flushes_total") >= 1
