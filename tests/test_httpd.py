"""tallyd's HTTP/1.1 server over real sockets: pipelining, keep-alive, bad requests."""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)


def exchange(port: int, data: bytes, answers: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while len(re.findall(rb"HTTP/1\.1 \d{3}", got)) < answers or not got.endswith(
            (b"</svg>", b"}")
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


def test_pipelined_requests_answer_in_order(server: Server) -> None:
    requests = [
        b"GET /badge/p.svg HTTP/1.1\r\nHost: x\r\n\r\n",  # first view: read from the store
        b"GET /badge/p.svg HTTP/1.1\r\nHost: x\r\n\r\n",  # cached: answered at once
        b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\n"
        b'{"event":"hit","account":"p"}',
        b"GET /badge/p.json?increment=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/stats/track/p/hit HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    got = exchange(server.port, b"".join(requests), len(requests))
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", got)
    assert statuses == [b"200", b"200", b"202", b"200", b"200"], got
    # The badge's figure takes events from other routes at its next refresh (--badge-refresh, 5 s).
    assert got.index(b"hits: 1") < got.index(b"hits: 2") < got.index(b'"message":"3"')
    assert got.endswith(b"}") and b'"total":4' in got


def test_keep_alive_and_http_1_0(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    got = exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n", 1)
    assert b"connection: close" in got.lower()


def test_expect_100_continue(server: Server) -> None:
    body = b'{"event":"hit","account":"c"}'
    head = b"POST /api/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 202 ")


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"],
)
def test_malformed_requests_get_a_json_400(server: Server, request_bytes: bytes) -> None:
    got = exchange(server.port, request_bytes, 1)
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b'"error":"bad_request"' in got and b"Traceback" not in got
    assert server.get("/healthz").status_code == 200


def test_oversized_targets_and_headers_are_refused(server: Server) -> None:
    long_url = b"GET /badge/" + b"a" * 9000 + b".svg HTTP/1.1\r\nHost: x\r\n\r\n"
    got = exchange(server.port, long_url, 1)
    assert got.startswith(b"HTTP/1.1 414 ") and b'"error":"uri_too_long"' in got
    many = b"GET /healthz HTTP/1.1\r\n" + b"X-Junk: " + b"j" * 1000 + b"\r\n"
    got = exchange(server.port, many * 1 + b"X-More: " + b"m" * 70_000 + b"\r\n\r\n", 1)
    assert got.startswith(b"HTTP/1.1 431 ") and b'"error":"headers_too_large"' in got
    assert server.get("/api/stats/track/all/hit").json()["total"] == 0


def test_plain_gets_and_others_interleave_in_order(server: Server) -> None:
    plain = b"GET /badge/m.svg HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
    head = b"HEAD /badge/m.svg HTTP/1.1\r\nHost: x\r\n\r\n"  # httptools' path; not a view
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(plain)  # the first view reads the store
        assert b"hits: 1" in sock.recv(65536)
        # Read in place, then by httptools, then in place again; the last request
        # arrives in two pieces, so httptools holds its first half.
        sock.sendall(plain + head + plain + plain[:20])
        sock.sendall(plain[20:] + plain.replace(b"Host: x", b"Host: x\r\nConnection: close"))
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3})", got) == [b"200"] * 5
    shown = re.findall(rb"<title>hits: (\d+)</title>", got)
    assert shown == [b"2", b"3", b"4", b"5"]  # HEAD has no body
    assert got.lower().count(b"connection: close") == 1
