"""Syslog ingest over real UDP and Unix datagram sockets."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tallyd.events import Rejected
from tallyd.ingest.syslog import event_of, message_of
from tests.conftest import Server, udp_port, wait_until

pytestmark = pytest.mark.timeout(120)


def total(server: Server, account: str, event: str = "hit") -> int:
    from urllib.parse import quote

    got: int = server.get(f"/api/stats/track/{quote(account, safe='')}/{event}").json()["total"]
    return got


def wait_total(server: Server, account: str, want: int, event: str = "hit") -> int:
    return wait_until(lambda: total(server, account, event), want)


def test_parsing() -> None:
    bsd = b'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","benwilber%2Fbashids"\n'
    assert message_of(bsd) == (b"badge", b'"2015-12-25","benwilber%2Fbashids"')
    ietf = b'<190>1 2026-11-23T01:31:00Z web1 badge - - [x@1 a="x\\]y"][y@2 b="1"] '
    ietf += b'\xef\xbb\xbf{"event":"e"}'
    assert message_of(ietf) == (b"badge", b'{"event":"e"}')
    assert message_of(b"<190>1 2026-11-23T01:31:00Z web1 badge 12 ID1 - hello") == (
        b"badge",
        b"hello",
    )
    assert message_of(b"no syslog here") is None
    assert event_of(b'"2015-12-25","benwilber%2Fbashids"', "hit") == {
        "event": "hit",
        "account": "benwilber/bashids",
    }
    assert event_of(b'"2015-12-25","caf%C3%A9"', "view") == {"event": "view", "account": "café"}
    for bad in (b"hello", b'"2015-12-25"', b'"2015-12-25","%FF"', b"{nope"):
        assert isinstance(event_of(bad, "hit"), Rejected), bad


def test_nginx_lines_over_udp_counted_exactly(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}").start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5000):
            repo = "benwilber%2Fbashids" if i % 2 else "a%20b"
            s.sendto(
                f'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","{repo}"'.encode(),
                ("127.0.0.1", port),
            )
        line = b'<190>1 2026-11-23T01:31:00Z web1 app - - - {"type": "signup", "data": '
        s.sendto(line + b'{"account": "acme"}}', ("127.0.0.1", port))
        s.sendto(b"garbage", ("127.0.0.1", port))
        s.sendto(b"<190>Nov 23 01:31:00 web1 badge: not,csv", ("127.0.0.1", port))
    assert wait_total(server, "benwilber/bashids", 2500) == 2500
    assert wait_total(server, "a b", 2500) == 2500
    assert wait_total(server, "acme", 1, "signup") == 1
    metrics = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="syslog",reason="not_syslog"} 1' in metrics
    assert 'tallyd_events_rejected_total{source="syslog",reason="bad_line"} 1' in metrics
    assert re.search(r"^tallyd_syslog_kernel_drops 0$", metrics, re.M)


def test_unix_datagram_socket(server_factory: type[Server], tmp_path: Path) -> None:
    path = tmp_path / "tallyd.sock"
    server = server_factory(
        tmp_path, "--syslog", f"unix://{path}", "--syslog-event", "view"
    ).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(100):
            s.sendto(b'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","x%3Ay"', str(path))
    assert wait_total(server, "x:y", 100, "view") == 100
    assert server.stop() == 0
    assert not path.exists()
