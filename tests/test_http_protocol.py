"""The HTTP/1.1 protocol edge by edge: in-process through a fake transport, then over
real sockets for the limits that only show under load (memory, timing, descriptors)."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import h11
import httpx
import pytest

from tallyd import httpd, pace
from tallyd.config import Config
from tallyd.httpd import MAX_HEADERS, MAX_URL, PIECE, Connection, HTTPServer, Limits
from tallyd.web import (
    HTTPError,
    Request,
    Response,
    Scope,
    error_response,
    read_body,
    send_response,
)
from tests.conftest import Server, free_port

pytestmark = pytest.mark.timeout(60)

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


class FakeTransport:
    """Records what the server writes; `room` bytes fit before it asks for a pause."""

    def __init__(self, room: int | None = None, half_close: bool = False) -> None:
        self.protocol: Connection | None = None
        self.written = bytearray()
        self.closed = False
        self.half_close = half_close  # whether it can end our side alone (write_eof)
        self.eof = False
        self.reading = True
        self.room = room
        self.write_paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        self.written += data
        if self.room is not None and len(self.written) > self.room and not self.write_paused:
            self.write_paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def drain(self) -> None:
        """The client read everything: the buffer empties and writing resumes."""
        self.room = None if self.room is None else len(self.written) + self.room
        if self.write_paused:
            self.write_paused = False
            assert self.protocol is not None
            self.protocol.resume_writing()

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return self.half_close

    def write_eof(self) -> None:
        assert self.half_close and not self.closed
        self.eof = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def statuses(self) -> list[int]:
        return [int(s) for s in STATUS.findall(bytes(self.written))]


class FakeApp:
    """Routes: /fast (answered without a task), /slow (waits for `gate`), POST /echo
    (reads the body, after `gate` with ?wait), /bad-header; anything else is a 404."""

    max_body = 1000

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.bodies: list[bytes] = []
        self.refusals: list[str] = []
        self.pieces: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.streamed = 0  # pieces whose `send` has returned
        self.stream_end = ""  # how the last stream ended

    async def stream(self, send: Any, receive: Any, query: bytes) -> None:
        """Server-sent events: each piece put in `pieces` is sent as it comes, None
        ends the stream; with ?watch, the stream ends when the client goes."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        assert (await receive())["type"] == "http.request"
        if query == b"watch":
            await send({"type": "http.response.body", "body": b"data: hi\n\n", "more_body": True})
            self.streamed += 1
            self.stream_end = (await receive())["type"]
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            while (piece := await self.pieces.get()) is not None:
                if piece == b"!":
                    return  # a handler that forgets to end its body
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                self.streamed += 1
        except ConnectionError as exc:
            self.stream_end = type(exc).__name__
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.stream_end = "ended"

    def fast(self, scope: Scope) -> Response | None:
        if scope["method"] in ("GET", "HEAD") and scope["path"] == "/fast":
            return Response(200, b"fast", b"text/plain")
        return None

    def fast_get(
        self,
        raw_path: bytes,
        query: bytes,
        user_agent: bytes,
        forwarded: bytes,
        client: tuple[str, int] | None,
    ) -> Response | None:
        return Response(200, b"fast", b"text/plain") if raw_path == b"/fast" else None

    def refused(self, err: HTTPError, scope: Scope) -> Response:
        self.refusals.append(err.error)
        return error_response(err)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        try:
            if path == "/slow":
                await self.gate.wait()
                resp = Response(200, b"slow", b"text/plain")
            elif path == "/echo" and scope["method"] == "POST":
                if scope["query_string"] == b"wait":
                    await self.gate.wait()
                body = await read_body(Request(scope), receive, self.max_body)
                self.bodies.append(body)
                resp = Response(200, b"got %d" % len(body), b"text/plain")
            elif path == "/stream":
                await self.stream(send, receive, scope["query_string"])
                return
            elif path == "/bad-header":
                resp = Response(200, b"secret", b"text/plain", [(b"x-a", b"1\r\nset-cookie: x=1")])
            else:
                raise HTTPError(404, "not_found")
        except HTTPError as err:
            resp = self.refused(err, scope)
        await send_response(send, resp)


def attach(server: HTTPServer, transport: FakeTransport | None = None) -> Connection:
    """A connection of `server` made on a fake transport (a fresh one by default)."""
    conn = Connection(server)
    transport = transport or FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn


async def connect(
    limits: Limits | None = None, room: int | None = None, app: FakeApp | None = None
) -> tuple[Connection, FakeTransport, FakeApp]:
    app = app or FakeApp()
    transport = FakeTransport(room)
    return attach(HTTPServer(app, limits), transport), transport, app


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def until(done: Any, turns: int = 2000) -> None:
    """Let the loop turn until `done()`: a big read is parsed a turn (tallyd.pace) at a time."""
    for _ in range(turns):
        if done():
            return
        await asyncio.sleep(0)


GET = b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"


# -- 1. limits as the bytes arrive --------------------------------------------------------


async def test_a_long_header_is_refused_as_it_trickles_in_linear_time() -> None:
    conn, t, _ = await connect()
    conn.data_received(b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Big: ")
    fed = 0
    began = time.perf_counter()
    while not t.closed and fed < 4 * MAX_HEADERS:
        conn.data_received(b"a" * 7)  # a byte at a time is the worst case, 7 keeps it short
        fed += 7
    assert t.closed and fed <= MAX_HEADERS + PIECE + 7
    assert time.perf_counter() - began < 1.0
    assert t.statuses() == [431] and b'"error":"headers_too_large"' in t.written


async def test_a_head_in_one_big_read_is_refused() -> None:
    conn, t, _ = await connect()
    conn.data_received(b"GET /fast HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200_000)
    await until(lambda: t.closed)
    assert t.closed and t.statuses() == [431]


async def test_a_long_target_is_a_414_before_its_line_ends() -> None:
    conn, t, _ = await connect()
    conn.data_received(b"GET /" + b"u" * 1000)
    for _ in range(20):
        conn.data_received(b"u" * 1000)
    assert t.closed and t.statuses() == [414]
    assert MAX_URL < 21_000


async def test_heads_just_under_the_limit_pass_in_any_pieces() -> None:
    head = (
        b"GET /fast HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * (MAX_HEADERS - 100) + b"\r\n\r\n"
    )
    for size in (1000, PIECE - 1, len(head)):
        conn, t, _ = await connect()
        for i in range(0, len(head), size):
            conn.data_received(head[i : i + size])
        await until(t.statuses)
        assert t.statuses() == [200] and not t.closed


# -- 2. the head's deadline, apart from the idle timeout ------------------------------------


async def test_trickling_does_not_extend_the_head_deadline() -> None:
    conn, t, _ = await connect(Limits(header_timeout=1.0, keepalive_timeout=5.0))
    now = conn.loop.time()
    conn.data_received(b"GET /fast HTTP/1.1\r\n")
    for step in range(1, 4):
        conn.data_received(b"X-Slow: a\r\n")
        conn.check(now + step * 0.3)
        assert not t.closed
    conn.check(now + 1.1)
    assert t.closed and t.statuses() == [408]


def test_the_timeouts_are_settings_like_any_other() -> None:
    env = {"TALLYD_KEEPALIVE_TIMEOUT": "2", "TALLYD_MAX_CONNECTIONS": "7"}
    cfg = Config.load({"header_timeout": "1.5"}, env=env)
    assert (cfg.header_timeout, cfg.keepalive_timeout, cfg.max_connections) == (1.5, 2.0, 7)
    assert Config.load({}, env={}).header_timeout == 10.0
    with pytest.raises(ValueError, match="--header-timeout"):
        Config.load({"header_timeout": "0"}, env={})


async def test_idle_connections_close_after_the_keepalive_timeout() -> None:
    conn, t, _ = await connect(Limits(header_timeout=10.0, keepalive_timeout=2.0))
    conn.data_received(GET)
    now = conn.loop.time()
    conn.check(now + 1.9)
    assert not t.closed
    conn.check(now + 2.1)
    await settle()  # closed with the others of this turn (HTTPServer.close_soon)
    assert t.closed and t.statuses() == [200]  # closed quietly, nothing more written


async def test_a_head_waiting_behind_a_slow_answer_is_not_timed_out() -> None:
    conn, t, app = await connect(Limits(header_timeout=1.0))
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\n")
    await settle()
    conn.check(conn.loop.time() + 5)
    assert not t.closed
    app.gate.set()
    await settle()
    conn.data_received(b"Host: x\r\n\r\n")
    assert t.statuses() == [200, 200]


# -- 4. strict HTTP/1.1 ------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /fast HTTP/1.1\r\n\r\n",
        b"GET /fast HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /fast HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_host_missing_or_repeated_is_a_400(request_bytes: bytes) -> None:
    conn, t, _ = await connect()
    conn.data_received(request_bytes)
    assert t.statuses() == [400] and b'"error":"bad_host"' in t.written and t.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /fast HTTP/2.0\r\n\r\n",
        b"GET /fast HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET /fast\r\n\r\n",  # HTTP/0.9's request line
        b"GET /fast HTTP/0.9\r\nHost: a\r\n\r\n",
    ],
)
async def test_versions_other_than_1_0_and_1_1_are_a_505(request_bytes: bytes) -> None:
    conn, t, _ = await connect()
    conn.data_received(request_bytes)
    assert t.statuses() == [505] and b'"error":"http_version_not_supported"' in t.written
    assert t.closed


async def test_http_1_0_needs_no_host() -> None:
    conn, t, _ = await connect()
    conn.data_received(b"GET /fast HTTP/1.0\r\n\r\n")
    assert t.statuses() == [200]


@pytest.mark.parametrize(
    "coding",
    [b"identity, chunked", b"gzip, chunked", b"chunked, identity", b"gzip", b"chunked, chunked"],
)
async def test_any_transfer_encoding_but_chunked_is_refused(coding: bytes) -> None:
    conn, t, app = await connect()
    conn.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n"
    )
    await settle()
    assert t.statuses() in ([501], [400]) and b'"error":' in t.written and t.closed
    assert not app.bodies


async def test_a_read_of_many_tiny_chunks_is_parsed_over_several_turns() -> None:
    # Each chunk is a Python callback: a read of 1-byte chunks is parsed a turn of the
    # loop at a time (tallyd.pace), reading paused meanwhile, and the body comes whole.
    app = FakeApp()
    app.max_body = 100_000
    conn, t, _ = await connect(app=app)
    body = bytes(range(97, 123)) * 1000  # 26,000 1-byte chunks: ~20 ms of callbacks
    chunks = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
    conn.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
        + GET
    )
    assert not t.reading and conn.backlog  # far over one turn (0.3 ms)
    await until(lambda: len(t.statuses()) == 2)
    assert t.statuses() == [200, 200] and app.bodies == [body] and t.reading


async def test_chunked_bodies_are_read() -> None:
    conn, t, app = await connect()
    conn.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    await settle()
    assert t.statuses() == [200] and app.bodies == [b"abc"]


async def test_a_response_header_with_a_line_break_is_never_sent() -> None:
    conn, t, _ = await connect()
    conn.data_received(b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    assert t.statuses() == [500] and t.closed
    assert b"set-cookie" not in t.written and b"secret" not in t.written


# -- 5. HTTP/1.1 semantics -----------------------------------------------------------------

EXPECT = b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def test_100_continue_is_sent_when_the_handler_reads_the_body() -> None:
    conn, t, app = await connect()
    conn.data_received(EXPECT % (b"/echo?wait", 5))
    await settle()
    assert t.written == b""  # the handler has not asked for the body yet
    app.gate.set()
    await settle()
    assert t.written == CONTINUE
    conn.data_received(b"hello")
    await settle()
    assert t.statuses() == [100, 200] and app.bodies == [b"hello"] and not t.closed


async def test_100_continue_never_comes_before_the_answer_before_it() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + EXPECT % (b"/echo", 2))
    await settle()
    assert t.written == b"" and not t.reading  # the pipelined request waits, unread
    app.gate.set()
    await settle()
    assert t.statuses() == [200, 100] and t.written.endswith(CONTINUE) and t.reading
    conn.data_received(b"hi")
    await settle()
    assert t.statuses() == [200, 100, 200] and app.bodies == [b"hi"]


@pytest.mark.parametrize(
    ("target", "length", "status"), [(b"/echo", 5000, 413), (b"/nowhere", 5, 404)]
)
async def test_a_refused_expectation_gets_its_answer_without_100(
    target: bytes, length: int, status: int
) -> None:
    conn, t, _ = await connect()
    conn.data_received(EXPECT % (target, length))
    await settle()
    assert t.statuses() == [status] and CONTINUE not in t.written
    assert t.closed  # what the client sends next may be the body or a new request


async def test_http_1_0_keep_alive_is_answered_and_kept() -> None:
    conn, t, _ = await connect()
    for target in (b"/fast", b"/nowhere"):  # read in place, and by httptools
        conn.data_received(b"GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % target)
        await settle()
    assert t.statuses() == [200, 404] and not t.closed
    assert t.written.lower().count(b"connection: keep-alive") == 2
    conn.data_received(b"GET /fast HTTP/1.0\r\n\r\n")
    assert t.statuses() == [200, 404, 200] and t.closed


async def test_an_h2c_upgrade_is_answered_over_http_1_1_bodies_included() -> None:
    conn, t, app = await connect()
    # What `curl --http2 http://...` sends.
    upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"
    conn.data_received(b"GET /fast HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n")
    conn.data_received(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" + upgrade + b"\r\nhel"
    )
    conn.data_received(b"lo" + GET)
    await settle()
    assert t.statuses() == [200, 200, 200] and app.bodies == [b"hello"]
    assert b"101" not in t.written and not t.closed


# -- 6. pipelining and flow control ----------------------------------------------------


async def test_pipelined_requests_pause_reading_until_their_turn() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + GET * 3)
    await settle()
    assert not t.reading and t.statuses() == []
    app.gate.set()
    await settle()
    assert t.reading and t.statuses() == [200] * 4
    assert t.written.index(b"slow") < t.written.index(b"fast")


async def test_a_bad_request_behind_a_slow_one_is_refused_in_its_turn() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n")
    await settle()
    assert t.statuses() == [] and not t.closed
    app.gate.set()
    await settle()
    assert t.statuses() == [200, 400] and t.closed


async def test_a_full_write_buffer_pauses_reading_apart_from_pipelining() -> None:
    conn, t, app = await connect(room=500)
    conn.data_received(GET * 50)
    answered = len(t.statuses())
    assert 0 < answered < 50 and not t.reading  # the rest waits, unparsed
    t.drain()
    assert len(t.statuses()) > answered
    while t.write_paused:
        t.drain()
    assert t.statuses() == [200] * 50 and t.reading
    # Write-paused while a pipelined request waits: only both ending resumes reading.
    t.room = len(t.written) + 10
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
    await settle()
    assert not t.reading
    t.drain()
    assert not t.reading  # still waiting on /slow
    app.gate.set()
    await settle()
    assert t.reading and t.statuses()[-2:] == [200, 200]


async def test_bodies_held_across_connections_are_capped() -> None:
    app = FakeApp()
    server = HTTPServer(app, Limits(max_body_buffered=1500))
    conns = []
    for _ in range(2):
        conn = attach(server)
        t = cast(FakeTransport, conn.transport)
        conn.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        conn.data_received(b"a" * 800)
        conns.append((conn, t))
    (first, t1), (_, t2) = conns
    assert t1.statuses() == [] and t2.statuses() == [503] and t2.closed
    assert b"retry-after: 1" in t2.written
    await settle()
    assert server.body_bytes == 800
    first.data_received(b"a" * 200)
    await settle()
    assert t1.statuses() == [200] and server.body_bytes == 0


async def test_past_max_connections_a_503_with_retry_after() -> None:
    server = HTTPServer(FakeApp(), Limits(max_connections=2))
    assert server._refusal(0) is None and server._refusal(1) is None
    # A socket accepted but not yet made a connection counts toward the cap.
    assert server._refusal(2) is not None
    server.connections.add(Connection(server))
    assert server._refusal(1) is not None
    server.connections.add(Connection(server))
    answer = server._refusal(0)
    assert answer is not None and answer.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1\r\n" in answer and b"connection: close" in answer


async def test_a_refused_connection_lingers_before_closing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(httpd, "LINGER", 0.05)
    conn, t, _ = await connect()
    t.half_close = True
    conn.data_received(b"NOT HTTP\r\n\r\n")
    await settle()
    # Our side ended, input still read (and dropped): no reset loses the answer.
    assert t.statuses() == [400] and t.eof and t.reading and not t.closed
    conn.data_received(b"more the client had sent")
    assert t.statuses() == [400]
    await asyncio.sleep(0.1)
    assert t.closed


async def test_out_of_descriptors_slow_heads_go_before_clients_that_finished_requests() -> None:
    server = HTTPServer(FakeApp())

    def opened() -> FakeTransport:
        t = FakeTransport(half_close=True)
        attach(server, t)
        return t

    kept = [opened() for _ in range(20)]
    for t in kept:
        assert t.protocol is not None
        t.protocol.data_received(GET)  # answered: idle between requests
        await asyncio.sleep(0.001)
    slow = opened()
    assert slow.protocol is not None
    slow.protocol.data_received(b"GET /fast HTTP/1.1\r\nX-Slow: a")  # a head in progress
    refused = opened()
    assert refused.protocol is not None
    refused.protocol.data_received(b"NOT HTTP\r\n\r\n")  # answered 400, lingering
    await settle()
    assert not refused.closed and refused.eof
    assert server.shed() == 16
    # The lingering and the slow first; then the keep-alive clients idle the longest.
    assert refused.closed and slow.closed
    assert [t.closed for t in kept] == [True] * 14 + [False] * 6


async def test_a_body_trickled_in_is_refused_at_the_minimum_rate() -> None:
    conn, t, app = await connect(Limits(header_timeout=2))
    conn.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n")
    began = conn.body_since
    for i in range(60):  # a byte every half second keeps no idle timer from firing
        conn.data_received(b"a")
        assert not conn.check(began + i * 0.5) or i * 0.5 > 2 + (i + 1) / httpd.MIN_BODY_RATE
    assert t.closed and t.statuses() == [408] and b'"error":"body_timeout"' in t.written
    assert app.bodies == []


async def test_a_body_at_a_fair_rate_is_not_refused() -> None:
    conn, _, app = await connect(Limits(header_timeout=2))
    conn.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n")
    began = conn.body_since
    conn.data_received(b"a" * 998)  # 2 s of grace + 998 / 500 s: nearly 4 s
    assert not conn.check(began + 3.9)
    conn.data_received(b"a")
    await settle()
    assert app.bodies == [b"a" * 999]


async def test_a_client_waiting_for_100_continue_is_not_timed_out() -> None:
    conn, t, app = await connect(Limits(header_timeout=2))
    conn.data_received(EXPECT % (b"/echo?wait", 5))
    await settle()
    assert not conn.check(conn.body_since + 60) and t.written == b""
    app.gate.set()
    await settle()
    assert t.written == CONTINUE
    assert conn.check(conn.body_since + 3)
    await settle()
    assert t.statuses() == [100, 408] and b"body_timeout" in t.written


async def test_connections_closing_together_are_torn_down_a_batch_a_turn() -> None:
    # Each teardown runs a turn after its close: 4,000 clients closing together held
    # an honest request 50-160 ms behind theirs.
    server = HTTPServer(FakeApp())
    crowd = []
    for _ in range(httpd.CLOSE_BATCH * 3 + 1):
        conn = attach(server)
        conn.data_received(b"GET / HTTP/1.1\r\nHo")
        crowd.append((conn, cast(FakeTransport, conn.transport)))
    for conn, _ in crowd:
        assert conn.eof_received() is True  # kept until the closer's turn
    closed = []
    for _ in range(4):
        await asyncio.sleep(0)
        closed.append(sum(t.closed for _, t in crowd))
    assert closed == [httpd.CLOSE_BATCH * n for n in (1, 2, 3)] + [len(crowd)]


async def test_a_connection_gone_is_freed_without_the_garbage_collector() -> None:
    # A crowd of refused heads each left a cycle (connection -> parser -> its bound
    # callbacks) for the collector: its passes over them held the loop 90-170 ms.
    conn, t, _ = await connect(Limits(header_timeout=0.2))
    conn.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo")
    await settle()
    assert len(t.statuses()) == 1  # one answered, one head half read
    gone = weakref.ref(conn)
    gc.disable()
    try:
        conn.connection_lost(None)
        t.protocol = None  # what uvloop's transport does after connection_lost
        del conn
        assert gone() is None
    finally:
        gc.enable()


async def test_the_sweep_refuses_a_crowd_of_late_heads_a_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A turn's time is spent at the first check: a slice is SWEEP_CHECK connections.
    monkeypatch.setattr(pace, "TURN", 0.0)
    server = HTTPServer(FakeApp(), Limits(header_timeout=0.2, keepalive_timeout=5))
    crowd = []
    for _ in range(httpd.SWEEP_CHECK * 12):
        conn = attach(server)
        conn.data_received(b"GET / HTTP/1.1\r\nHo")
        crowd.append(cast(FakeTransport, conn.transport))
    sweep = asyncio.create_task(server._sweep())
    try:
        deadline = time.monotonic() + 3
        turns = 0
        while not all(t.closed for t in crowd) and time.monotonic() < deadline:
            before = sum(t.closed for t in crowd)
            await asyncio.sleep(0)
            turns += 1
            assert sum(t.closed for t in crowd) - before <= httpd.SWEEP_CHECK + 1
        assert all(t.statuses() == [408] for t in crowd) and turns >= 12
    finally:
        sweep.cancel()


# -- 7. streamed answers ---------------------------------------------------------------


def read_answers(data: bytes, method: bytes = b"GET") -> list[tuple[int, bytes]]:
    """The answers on the wire as an HTTP client library reads them (h11): status and
    body of each, or an AssertionError if the framing is wrong."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    answers: list[tuple[int, bytes]] = []
    while True:
        client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        event = client.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = client.next_event()
        if event is h11.NEED_DATA:
            return answers
        assert isinstance(event, h11.Response), event
        status, body = event.status_code, b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), f"the body did not end: {event}"
            body += event.data
        answers.append((status, body))
        if client.their_state is not h11.DONE:  # the server said it closes
            return answers
        client.start_next_cycle()


async def test_a_streamed_answer_is_chunked_and_keeps_the_connection() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
    await settle()
    assert t.written == b""  # the head goes with the first piece: it may still be whole
    app.pieces.put_nowait(b"data: 1\n\n")
    await settle()
    head = bytes(t.written)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked\r\n" in head
    assert b"content-length" not in head and not t.reading  # the GET behind it waits
    for piece in (b"", b"data: 2\n\n"):
        app.pieces.put_nowait(piece)
        await settle()
        assert t.written.endswith(piece + b"\r\n" if piece else b"data: 1\n\n\r\n")
    app.pieces.put_nowait(None)
    await settle()
    answers = read_answers(bytes(t.written))
    assert answers == [
        (200, b"data: 1\n\ndata: 2\n\n"),
        (200, b"fast"),
    ]
    assert not t.closed and app.stream_end == "ended"


async def test_a_stream_to_http_1_0_ends_by_closing() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    for piece in (b"data: 1\n\n", None):
        app.pieces.put_nowait(piece)
        await settle()
    assert b"transfer-encoding" not in t.written and b"connection: close\r\n" in t.written
    assert t.written.endswith(b"\r\n\r\ndata: 1\n\n") and t.closed


async def test_head_of_a_stream_has_no_body() -> None:
    conn, t, app = await connect()
    conn.data_received(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    for piece in (b"data: 1\n\n", None):
        app.pieces.put_nowait(piece)
        await settle()
    assert t.written.endswith(b"transfer-encoding: chunked\r\n\r\n") and not t.closed
    assert read_answers(bytes(t.written), b"HEAD")[0][0] == 200


async def test_a_stream_waits_while_the_client_does_not_read() -> None:
    conn, t, app = await connect(room=300)
    conn.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    for _ in range(10):
        app.pieces.put_nowait(b"x" * 100)
    await settle()
    held = len(t.written)
    assert t.write_paused and app.streamed <= 2 and held < 600  # not every piece written
    t.drain()
    await settle()
    assert app.streamed > 2 and len(t.written) > held


async def test_a_stream_learns_its_client_went() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream?watch HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    assert app.streamed == 1 and app.stream_end == ""  # receive() waits, as in ASGI
    t.close()
    await settle()
    assert app.stream_end == "http.disconnect" and conn.task is None


async def test_sending_to_a_client_gone_ends_the_stream_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    t.close()
    await settle()
    app.pieces.put_nowait(b"data: late\n\n")
    await settle()
    assert app.stream_end == "ClientGone" and conn.task is None
    assert b"late" not in t.written and "Traceback" not in caplog.text


async def test_a_stream_the_handler_breaks_is_cut_short() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    app.pieces.put_nowait(b"data: 1\n\n")
    await settle()
    app.pieces.put_nowait(b"!")
    await settle()
    assert t.closed and not t.written.endswith(b"0\r\n\r\n")


# -- 8. graceful stop ------------------------------------------------------------------


async def test_a_stop_closes_idle_connections_and_heads_at_once() -> None:
    idle, t1, _ = await connect()
    idle.data_received(GET)
    reading, t2, _ = await connect()
    reading.data_received(b"GET /fast HTTP/1.1\r\nHo")
    idle.shutdown()
    reading.shutdown()
    await settle()
    assert t1.closed and t2.closed and t1.statuses() == [200] and t2.written == b""


async def test_a_stop_lets_an_upload_finish_and_answers_it() -> None:
    conn, t, app = await connect()
    conn.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    conn.shutdown()
    await settle()
    assert not t.closed and t.written == b""
    conn.data_received(b"world" + GET)  # the body's end, then a request it will not answer
    await settle()
    assert app.bodies == [b"helloworld"] and t.statuses() == [200] and t.closed
    assert b"connection: close\r\n" in t.written


async def test_a_stop_ends_streams_through_receive() -> None:
    conn, t, app = await connect()
    conn.data_received(b"GET /stream?watch HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    conn.shutdown()
    await settle()
    assert app.stream_end == "http.disconnect" and t.closed
    assert read_answers(bytes(t.written)) == [(200, b"data: hi\n\n")]


async def test_a_stop_waits_its_timeout_then_cancels(caplog: pytest.LogCaptureFixture) -> None:
    conn, t, app = await connect()
    slow, t2, _ = await connect(app=app)
    slow.server = conn.server
    conn.server.connections.add(slow)
    conn.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
    slow.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    began = time.monotonic()
    await conn.server.stop(0.3)
    assert 0.3 <= time.monotonic() - began < 1.0
    assert t.closed and t2.closed and slow.task is not None and slow.task.cancelled()
    assert "2 connection(s) still busy after 0.3 s" in caplog.text


# -- real sockets ------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood_header(port: int, total: int, passed: list[float] | None = None) -> bytes:
    """Send a head with one header of `total` bytes, until an answer comes (as a
    client reading while it sends would); the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        sent = 0
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
                if passed is not None and not passed and sent > MAX_HEADERS + 2 * PIECE:
                    passed.append(time.monotonic())
        except OSError:
            pass  # refused and closed: what is left of the flood has nowhere to go
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except OSError:
            pass
        return got


def test_a_12_mib_header_is_refused_in_bounded_memory(server: Server) -> None:
    assert server.proc is not None
    assert flood_header(server.port, 256 * 1024).startswith(b"HTTP/1.1 431 ")  # warm up
    before = rss_kb(server.proc.pid)
    got = flood_header(server.port, 12 << 20)
    assert got.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in got
    assert rss_kb(server.proc.pid) - before < 2048
    assert server.get("/healthz").status_code == 200


def test_an_endless_header_is_cut_off_at_once_and_delays_no_one(server: Server) -> None:
    answered: list[float] = []
    passed: list[float] = []
    latencies: list[float] = []
    done = threading.Event()

    def attack() -> None:
        got = flood_header(server.port, 128 << 20, passed)
        answered.append(time.monotonic())
        assert got.startswith(b"HTTP/1.1 431 ")
        done.set()

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as honest:
        ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        honest.sendall(ask)
        honest.recv(65536)
        thread = threading.Thread(target=attack)
        thread.start()
        while not done.is_set() or len(latencies) < 20:
            began = time.monotonic()
            honest.sendall(ask)
            assert honest.recv(65536).startswith(b"HTTP/1.1 200 ")
            latencies.append(time.monotonic() - began)
        thread.join(10)
    assert passed and answered and answered[0] - passed[0] < 0.1
    assert max(latencies) < 0.010, sorted(latencies)[-5:]


def test_slow_heads_are_closed_at_the_header_timeout(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--header-timeout", "1").start()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    began = time.monotonic()
    closed: dict[socket.socket, float] = {}
    try:
        for step in range(len(head)):
            for sock in socks:
                if sock in closed:
                    continue
                try:
                    sock.sendall(head[step : step + 1])
                except OSError:
                    closed[sock] = time.monotonic()
            readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0)
            for sock in readable:
                closed[sock] = time.monotonic()
            assert server.get("/healthz").status_code == 200  # an honest client meanwhile
            if len(closed) == len(socks) or time.monotonic() - began > 4:
                break
            time.sleep(0.5)
        assert len(closed) == len(socks)
        assert max(closed.values()) - began < 2.6
        some = socks[0]
        some.settimeout(1)
        assert some.recv(65536).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in socks:
            sock.close()


def test_thousands_of_pipelined_requests_answered_in_order(server: Server) -> None:
    assert server.proc is not None
    # The first view reads the store (a task), the others wait behind it, then are
    # answered in place; the figure each shows proves the order.
    request = b"GET /badge/o/piped.svg HTTP/1.1\r\nHost: x\r\n\r\n"
    before = rss_kb(server.proc.pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sender = threading.Thread(target=sock.sendall, args=(request * 5000,))
        sender.start()
        got = bytearray()
        while got.count(b"</svg>") < 5000:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {got.count(b'</svg>')} answers"
            got += chunk
        sender.join(10)
    assert STATUS.findall(bytes(got)) == [b"200"] * 5000
    titles = re.findall(rb"<title>hits: ([\d,]+)</title>", bytes(got))
    assert [int(x.replace(b",", b"")) for x in titles] == list(range(1, 5001))
    assert rss_kb(server.proc.pid) - before < 16 * 1024


def capped(server_factory: type[Server], tmp_path: Path, cap: int) -> Server:
    """A server with `--max-connections cap`, its own client's connection closed."""
    server = server_factory(tmp_path, "--max-connections", str(cap)).start()
    server.client.close()
    time.sleep(0.2)
    return server


def test_past_max_connections_new_ones_get_a_503(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = capped(server_factory, tmp_path, 3)
    held = []
    ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(ask)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        held.append(sock)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
        got = extra.recv(65536)
    assert got.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in got
    # The line is written just after the answer is sent.
    deadline = time.monotonic() + 5
    while "too many connections open (--max-connections)" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.02)
    held.pop().close()
    time.sleep(0.2)
    assert httpx.get(server.url + "/healthz").status_code == 200
    for sock in held:
        sock.close()


def test_a_burst_of_connections_does_not_pass_the_cap(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # 120 connects land in the backlog together, so one wake-up of the listener
    # accepts a whole batch before any of them has become a connection.
    server = capped(server_factory, tmp_path, 50)
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(120)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = [sock.recv(65536)[:12] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    served = statuses.count(b"HTTP/1.1 200")
    assert served + statuses.count(b"HTTP/1.1 503") == 120
    assert 0 < served <= 50
    time.sleep(0.2)
    assert httpx.get(server.url + "/healthz").status_code == 200


GETS = [
    "/",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/badge/h.svg",
    "/badge/h.json",
    "/badge.svg?repo=h",
    "/api/stats/track",
    "/api/stats/track/h/hit",
    "/api/accounts",
    "/api/top",
    "/nowhere",
]


def test_head_wherever_get(server: Server) -> None:
    for path in GETS:
        got = server.client.get(path)
        head = server.client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]


# -- descriptors ------------------------------------------------------------------------


def spawn(tmp: Path, nofile: tuple[int, int]) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp / "tallyd.log"
    cmd = [
        sys.executable,
        "-m",
        "tallyd",
        "serve",
        "--store",
        f"sqlite:///{tmp}/t.db",
        "--http",
        f"127.0.0.1:{port}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc, port, log
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(log.read_text())


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_the_open_files_limit_is_raised(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    proc, _, _ = spawn(tmp_path, (256, 4096))
    stopped.append(proc)
    limits = Path(f"/proc/{proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+4096\s+4096", limits), limits


def test_out_of_descriptors_the_listener_recovers(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    proc, port, log = spawn(tmp_path, (64, 64))
    stopped.append(proc)
    held = []
    for _ in range(100):  # more than the server can hold: it sheds idle ones
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    time.sleep(0.5)
    served = 0
    for _ in range(20):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                served += 1
        except httpx.TransportError:
            pass
    assert served >= 10
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    text = log.read_text()
    warnings = text.count("out of file descriptors")
    assert 1 <= warnings <= 3, text
    assert proc.poll() is None
