"""tallyd's HTTP/1.1 server: httptools parsing on the event loop, no task per fast request.

A badge view is the hottest request tallyd serves, and a general ASGI server spends
most of its time around the application: on this project's 2-core machine uvicorn
answered a do-nothing handler ~9k times a second while a bare asyncio protocol with
the same parser answered ~45k (docs/http-server.md). So requests are parsed here and
first offered to `App.fast`, which answers a cached badge synchronously; everything
else goes to the app's ASGI entry point in a task, one request at a time per
connection: a pipelined request waits its turn, and the connection is not read
from meanwhile. Every limit (head size, head deadline, bodies, connections) is
enforced as the bytes arrive, not after; docs/http-server.md lists them.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, Protocol, cast

import httptools

from tallyd.listener import Listener, raise_fd_limit
from tallyd.metrics import Histogram
from tallyd.pace import TURN, Pace
from tallyd.plainget import plain_get
from tallyd.web import INTERNAL, Headers, HTTPError, Message, Response, Scope, too_large

log = logging.getLogger("tallyd.http")

MAX_URL: Final = 8 * 1024
MAX_HEADERS: Final = 64 * 1024
# httptools is fed at most this much at once while a head is read (see `_consume`).
PIECE: Final = 16 * 1024
# ... and while a chunked body is: each chunk is a Python callback, and 16 KB of
# 1-byte chunks was 3 ms before the loop's clock was looked at again.
CHUNKED_PIECE: Final = 2 * 1024
# Where the parser is: between requests, in a head, in a body, in an upgrade's body.
IDLE, HEAD, BODY, RAW_BODY = 0, 1, 2, 3
# The slowest a request body may arrive, after --header-timeout seconds of grace, in
# bytes a second (Apache's mod_reqtimeout uses the same rule and rate): a body
# trickled a byte at a time would otherwise hold its connection for ever.
MIN_BODY_RATE: Final = 500
# Seconds a refused connection stays open, its input read and dropped, after its
# answer: closing with unread input would reset the connection, and a client that
# had not read the answer yet would lose it.
LINGER: Final = 1.0
# The sweep checks its time (tallyd.pace) after each connection it refuses or closes
# (a 408 costs about 50 µs), and every SWEEP_CHECK it only looks at. 5,000 heads late
# at once must not stall everyone; with 64 refusals a turn, an honest view waited
# 2-4 ms behind each.
SWEEP_CHECK: Final = 16
# The sweep's turns (tallyd.pace) are a third of the default: at 0.3 ms, an honest
# p99 under 5,000 slow heads was 1.6-3.0 ms; at 0.1 ms, 1.1-1.2 ms.
SWEEP_TURN: Final = 0.0001
# Connections closed a turn of the loop (`HTTPServer.close_soon`), about 15 µs each.
CLOSE_BATCH: Final = 8
# How an answer leaves the connection; `plain_get` returns the same values.
CLOSE, KEEP, KEEP_ALIVE_1_0 = 0, 1, 2
CLOSE_HEADER: Final = (b"connection", b"close")
_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}


class Application(Protocol):
    max_body: int

    def fast(self, scope: Scope) -> Response | None: ...

    def fast_get(
        self,
        raw_path: bytes,
        query: bytes,
        user_agent: bytes,
        forwarded: bytes,
        client: tuple[str, int] | None,
    ) -> Response | None: ...

    def refused(self, err: HTTPError, scope: Scope) -> Response: ...

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None: ...


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


_clock = _Clock()


_heads: dict[tuple[int, bytes, tuple[tuple[bytes, bytes], ...]], bytes] = {}
_lengths: dict[int, bytes] = {}


class BadHeader(ValueError):
    """A response header with CR, LF or NUL in it, or a name that is not a token."""


def _check_headers(content_type: bytes, headers: Headers) -> None:
    for name, value in [(b"content-type", content_type), *headers]:
        if not name or b":" in name or any(b in value or b in name for b in (b"\r", b"\n", b"\0")):
            raise BadHeader(name + b": " + value)


def _fixed(status: int, content_type: bytes, headers: Headers) -> bytes:
    """The status line and headers of a kind of answer, joined once and kept.

    Headers are checked when the lines are joined (BadHeader), so a kept kind
    costs nothing more.
    """
    key = (status, content_type, tuple(headers))
    fixed = _heads.get(key)
    if fixed is None:
        _check_headers(content_type, headers)
        fixed = b"".join(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
                b"" if status == 204 else b"content-type: " + content_type + b"\r\n",
                *(k + b": " + v + b"\r\n" for k, v in headers),
            ]
        )
        if len(_heads) < 1024:
            _heads[key] = fixed
    return fixed


def encode(status: int, content_type: bytes, headers: Headers, body: bytes, head: bool) -> bytes:
    """A whole response on the wire.

    A 204 (a CORS preflight) carries no body, so neither a type nor a length
    (RFC 9110 §8.6: a 204 must not send Content-Length).
    """
    fixed = _fixed(status, content_type, headers)
    if status == 204:
        return b"".join((fixed, _clock.date(), b"\r\n"))
    size = len(body)
    length = _lengths.get(size)
    if length is None:
        length = b"content-length: %d\r\n\r\n" % size
        if len(_lengths) < 4096:
            _lengths[size] = length
    return b"".join((fixed, _clock.date(), length, b"" if head else body))


def encode_stream_head(status: int, content_type: bytes, headers: Headers, chunked: bool) -> bytes:
    """The head of a response whose body follows in pieces: chunked for HTTP/1.1,
    else delimited by closing the connection (the caller says `connection: close`)."""
    framing = b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n"
    return b"".join((_fixed(status, content_type, headers), _clock.date(), framing))


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body (RFC 9112 §7.1); empty data ends the body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _wake(fut: asyncio.Future[None] | None) -> bool:
    """Resolve a future someone may be waiting on; whether this call did."""
    if fut is None or fut.done():
        return False
    fut.set_result(None)
    return True


class ClientGone(ConnectionError):
    """Raised by an ASGI `send` once the client has gone: a stream ends there."""


class _Request:
    __slots__ = (
        "body",
        "complete",
        "continued",
        "dispatched",
        "error",
        "expect",
        "headers",
        "keep_alive",
        "method",
        "since",
        "size",
        "too_large",
        "upgrade",
        "url",
        "version",
        "waiter",
    )

    def __init__(self, since: float = 0.0) -> None:
        self.since = since  # when its first byte was read (loop time)
        self.url = b""
        self.headers: Headers = []
        # A bytearray, not a list of pieces: a body of a million 1-byte chunks was a
        # million objects to join and then free, 60 ms of the loop.
        self.body = bytearray()
        self.size = 0  # body bytes held, counted in HTTPServer.body_bytes
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.too_large = False
        self.expect = False  # Expect: 100-continue, not answered yet
        self.continued = False
        self.upgrade = False
        self.complete = False  # the whole body is in
        self.dispatched = False  # answering it has begun or it waits its turn
        self.error: HTTPError | None = None  # answered with this, then the connection closes
        self.waiter: asyncio.Future[None] | None = None  # a handler waiting for the body


class _Nobody:
    """What the parser of a connection that is gone calls back: nobody."""


SPENT: Final = httptools.HttpRequestParser(_Nobody())


class Connection(asyncio.Protocol):
    """One client connection: parsing, answering in order, and flow control.

    Reading stops (`transport.pause_reading`) for two separate reasons: a pipelined
    request waits while the one before it is answered (`read_paused`), or the client
    does not read its answers (`write_paused`). Input already received but not yet
    parsed then waits in `backlog` (one socket read at most).
    """

    def __init__(self, server: HTTPServer, made: Callable[[], None] | None = None) -> None:
        self.server = server
        self.made = made  # tells the listener this connection counts now
        self.app = server.app
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.current = _Request()
        self.state = IDLE
        self.begun = 0  # messages httptools has begun, to tell a new head from a continued one
        self.head_fed = 0  # an upper bound of the current head's bytes, at most PIECE over
        self.head_size = 0
        self.head_since = 0.0
        # When the request being answered began (loop time; 0: not measured).
        self.since = 0.0
        self.line_ended = False  # the request line of the current head was fed whole
        self.body_since = 0.0  # when the current body could begin (loop time)
        self.body_got = 0  # bytes of it read so far
        self.body_left = 0  # bytes of the current body still to come; -1: chunked
        self.queue: deque[_Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.active: _Request | None = None
        self.backlog: bytes | None = None
        self.held: bytearray | None = None  # the unfinished line of a head
        self.read_paused = False
        self.write_paused = False
        self.reading = True
        self.broken = False  # input after a refused request is not read
        self.last_active = self.loop.time()
        self.closing = False
        self.lingering = False  # refused and answered, dropping input until it closes
        # A stop is under way: the request being read or answered is finished, then
        # the connection closes (`shutdown`).
        self.draining = False
        # Set when the client goes (or the server stops): a handler's second
        # `receive()` waits on it, as ASGI has it, so a stream learns to end.
        self.gone: asyncio.Future[None] | None = None
        # Set when the client reads again after `pause_writing`: a stream waits on it.
        self.drained: asyncio.Future[None] | None = None

    # -- the connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        self.server.connections.add(self)
        if self.made is not None:
            self.made()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        # The parser holds this connection's callbacks: a cycle only the garbage
        # collector would free. 5,000 slow heads refused and replaced each second
        # left it 80,000 objects a pass, and passes of 90-170 ms that held every
        # other client. Nothing is fed once closing.
        self.parser = SPENT
        for req in (self.current, self.active, *self.queue):
            if req is not None:
                self._forget(req)
                _wake(req.waiter)
        self.queue.clear()
        self.backlog = None
        _wake(self.gone)
        _wake(self.drained)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.broken:
            return
        if self.backlog is not None:  # a transport that went on reading while paused
            self.backlog += data
            return
        self._consume(data)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._stop_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self.drained)
        self._proceed()

    async def until_gone(self) -> None:
        """Wait until the client goes or the server stops."""
        if self.closing or self.draining:
            return
        if self.gone is None or self.gone.done():
            self.gone = self.loop.create_future()
        await self.gone

    async def until_drained(self) -> None:
        """Wait while the client is not reading what was written (back-pressure)."""
        while self.write_paused and not self.closing:
            if self.drained is None or self.drained.done():
                self.drained = self.loop.create_future()
            await self.drained

    def check(self, now: float) -> bool:
        """Close an idle connection, refuse a head that is late (the sweep's test);
        whether it did either."""
        if self.closing or self.broken:
            return False
        if self.state in (BODY, RAW_BODY):
            # A body being read (an Expect: 100-continue one has its task already),
            # unless reading is paused by this server, not the client.
            req = self.current
            if req.expect and not req.continued:
                return False  # the client waits for our 100 Continue, not we for it
            allowed = self.limits.header_timeout + self.body_got / MIN_BODY_RATE
            if self.reading and now - self.body_since > allowed:
                slow = f"the request body came slower than {MIN_BODY_RATE} bytes a second"
                self._refuse(HTTPError(408, "body_timeout", slow))
                return True
            return False
        if self.task is not None or self.queue:
            return False
        if self.state == HEAD:
            if now - self.head_since > self.limits.header_timeout:
                late = f"the request head did not arrive in {self.limits.header_timeout:g} s"
                self._refuse(HTTPError(408, "header_timeout", late))
                return True
        elif now - self.last_active > self.limits.keepalive_timeout:
            self.close()
            return True
        return False

    def shed_rank(self) -> tuple[int, float] | None:
        """Where the connection stands when descriptors run out, first shed first: a
        refused one lingering, then heads not complete (oldest first: slow clients
        look like this), then idle keep-alive connections (a client that finished
        requests); None for one with a request being read or answered."""
        if self.lingering:
            return (0, 0.0)
        if self.closing:
            return None
        if self.state in (BODY, RAW_BODY):
            return (1, self.body_since)  # an upload under way weighs as a head does
        if self.task is not None or self.queue:
            return None
        return (1, self.head_since) if self.state == HEAD else (2, self.last_active)

    def close(self, at_once: bool = False) -> None:
        """Close, with the others closing in this turn (`close_soon`), or `at_once`
        (to free a descriptor now)."""
        self.closing = True
        self.lingering = False
        if self.transport is not None and not self.transport.is_closing():
            if at_once:
                self.transport.close()
            else:
                self.server.close_soon(self.transport)

    def eof_received(self) -> bool:
        # The client is gone: closed with the others, a batch a turn (`close_soon`).
        self.close()
        return True  # the transport stays until then

    def shutdown(self) -> None:
        """Close now if idle or in the middle of a head; else once the request under
        way (being answered, or its body being read: an upload) has its answer."""
        self.draining = True
        _wake(self.gone)
        if self.lingering or (self.task is None and self.state in (IDLE, HEAD)):
            self.close()

    # -- reading -------------------------------------------------------------------

    def _consume(self, data: bytes) -> None:
        received = self.loop.time()
        # A turn's worth of work at most, then the rest waits a turn of the loop
        # (`_later`): uvloop reads a socket up to 32 times a wake-up, and a body of
        # 1-byte chunks (a Python callback each) held every other client 0.35 s a MB.
        # perf_counter, not the loop's clock: uvloop's counts whole milliseconds.
        turn_ends = time.perf_counter() + TURN
        start = 0
        size = len(data)
        if self.state == IDLE and self.task is None and not self.queue:
            # Plain GETs at the front are read and answered here (see plainget.py);
            # the first other request, and all after it, go to httptools.
            while start < size and not self.closing and not self.write_paused:
                if start and time.perf_counter() > turn_ends:
                    self._later(data[start:])
                    return
                req = plain_get(data, start)
                if req is None:
                    break
                end, path, query, agent, forwarded, keep = req
                resp = self.app.fast_get(path, query, agent, forwarded, self.peer)
                if resp is None:
                    break
                self.since = received
                self._send(resp, keep, False)
                start = end
        # httptools is fed at most PIECE bytes at a time, or exactly the rest of a
        # body of known length, so the bytes of a head are known within PIECE and a
        # head is refused as soon as it passes the limit, whatever the reads' sizes.
        view = memoryview(data) if size - start > PIECE else None
        while start < size:
            if self.closing or self.broken:
                return
            if self.read_paused or self.write_paused:
                self.backlog = data[start:]
                return
            if start and time.perf_counter() > turn_ends:
                self._later(data[start:])
                return
            if self.state == RAW_BODY:
                end = min(size, start + self.body_left)
                try:
                    self.on_body(data[start:end])
                except HTTPError as err:
                    self._refuse(err)
                    return
                if self.body_left == 0:
                    self._complete(self.current)
                start = end
                continue
            if self.state != BODY:
                step = PIECE
            else:
                step = self.body_left if self.body_left > 0 else CHUNKED_PIECE
            end = min(size, start + step)
            newline = data.find(b"\n", start, end) >= 0
            if self.state == HEAD and self.line_ended and not newline:
                # A header line that has not ended is kept here until it does:
                # httptools would join its pieces by copying, in quadratic time.
                # (The request line is fed as it comes: on_url checks its length.)
                if self.held is None:
                    self.held = bytearray()
                self.held += data[start:end]
                self.head_fed += end - start
                if self.head_fed > MAX_HEADERS + PIECE:
                    self._refuse(_headers_too_large())
                    return
                start = end
                continue
            if self.held is not None:
                piece: bytes | memoryview = bytes(self.held) + data[start:end]
                self.held = None
            elif start == 0 and end == size:
                piece = data
            else:
                piece = view[start:end] if view is not None else data[start:end]
            begun = self.begun
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade as exc:
                # An upgrade (h2c, WebSocket) is ignored: the request is answered over
                # HTTP/1.1 and what follows it is read as HTTP/1.1 (httptools resumed).
                end = start + int(exc.args[0])
            except httptools.HttpParserError as exc:
                # A callback's exception (the limits and checks below) comes wrapped.
                cause = exc.__context__
                if not isinstance(cause, HTTPError):
                    cause = HTTPError(400, "bad_request", "the request is not valid HTTP/1.1")
                self._refuse(cause)
                return
            if self.state == HEAD:
                fed = end - start
                if self.begun != begun:
                    self.head_fed = fed
                else:
                    self.head_fed += fed
                    self.line_ended = self.line_ended or newline
                if self.head_fed > MAX_HEADERS + PIECE:
                    self._refuse(_headers_too_large())
                    return
            start = end

    def _later(self, rest: bytes) -> None:
        """Read `rest` on a later turn of the loop, and nothing more until then."""
        self.backlog = rest
        self._stop_reading()
        self.loop.call_soon(self._proceed)

    def _stop_reading(self) -> None:
        if self.reading and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self.reading = False

    def _proceed(self) -> None:
        """Answer the requests waiting their turn, then read on, as flow control allows."""
        while self.task is None and self.queue and not self.closing and not self.write_paused:
            self._answer(self.queue.popleft())
        if self.closing:
            if self.task is None:
                self.close()
            return
        if self.queue or self.write_paused:
            return
        if self.read_paused:
            self.read_paused = False
            if self.state == HEAD:  # the head's time runs from when it may be read again
                self.head_since = self.loop.time()
        if self.backlog is not None:
            data, self.backlog = self.backlog, None
            self._consume(data)
            if self.backlog is not None or self.closing or self.broken:
                return
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    def _refuse(self, err: HTTPError) -> None:
        """Answer the request being read with an error, in its turn, and close."""
        self.broken = True
        self.backlog = self.held = None
        self._stop_reading()
        req = self.current
        if req.complete:  # read whole already: the error is the next request's
            req = self.current = _Request()
        req.error = err
        self._forget(req)
        if not _wake(req.waiter) and not req.dispatched:  # else its handler answers it
            self._dispatch(req)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.state = HEAD
        self.begun += 1
        self.head_since = self.loop.time()
        self.line_ended = False
        self.current = _Request(self.head_since)
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        if len(self.current.url) > MAX_URL:
            raise HTTPError(414, "uri_too_long", f"the request target is over {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEADERS:
            raise _headers_too_large()
        self.current.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        req = self.current
        parser = self.parser
        req.method = parser.get_method().decode("ascii", "replace")
        self.body_since = self.loop.time()
        self.body_got = 0
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        self.state = BODY
        self.body_left = 0
        hosts = 0
        length = 0
        coding: bytes | None = None
        for name, value in req.headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"transfer-encoding":
                coding = value if coding is None else coding + b"," + value
            elif name == b"expect" and value.lower() == b"100-continue":
                req.expect = req.version != "1.0"  # HTTP/1.0 has no 100 (RFC 9110 §10.1.1)
        if req.version not in ("1.0", "1.1"):
            # httptools reads `HTTP/2.0` and a bare `GET /` (HTTP/0.9) as heads too.
            raise HTTPError(
                505, "http_version_not_supported", "this server speaks HTTP/1.0 and HTTP/1.1"
            )
        if hosts > 1 or (hosts == 0 and req.version == "1.1"):
            raise HTTPError(400, "bad_host", "an HTTP/1.1 request carries exactly one Host header")
        if coding is not None:
            # Anything but exactly `chunked` is a body tallyd cannot read, or a
            # smuggling attempt (RFC 9112 §6.1): refused, never guessed at.
            if coding.strip().lower() != b"chunked" or parser.should_upgrade():
                raise HTTPError(
                    501,
                    "unsupported_transfer_encoding",
                    "the only Transfer-Encoding accepted is chunked",
                )
            self.body_left = -1
        else:
            self.body_left = length
        req.upgrade = parser.should_upgrade()
        if length > self.app.max_body:
            req.too_large = True
        if req.too_large or req.expect:
            # Answered before the body: a 413 at once, or a handler whose first
            # read of the body sends 100 Continue (a refusal sends none).
            self._dispatch(req)

    def on_body(self, chunk: bytes) -> None:
        req = self.current
        self.body_got += len(chunk)
        if self.body_left > 0:
            self.body_left -= len(chunk)
        self.last_active = self.loop.time()
        if req.too_large:
            return
        if req.size + len(chunk) > self.app.max_body:
            req.too_large = True
            self._forget(req)
            if not _wake(req.waiter) and not req.dispatched:
                self._dispatch(req)
            return
        req.size += len(chunk)
        req.body += chunk
        server = self.server
        server.body_bytes += len(chunk)
        if server.body_bytes > self.limits.max_body_buffered:
            raise HTTPError(
                503, "busy", "too many request bodies in progress", [(b"retry-after", b"1")]
            )

    def on_message_complete(self) -> None:
        if self.current.upgrade and self.body_left > 0:
            self.state = RAW_BODY  # httptools skips an upgrade's body: read it here
            return
        self._complete(self.current)

    def _complete(self, req: _Request) -> None:
        self.state = IDLE
        req.complete = True
        _wake(req.waiter)
        if not req.dispatched:
            self._dispatch(req)

    # -- answering -----------------------------------------------------------------

    def _dispatch(self, req: _Request) -> None:
        req.dispatched = True
        if self.task is None and not self.queue:
            self._answer(req)
        else:
            # Pipelined: it waits for the answer before it, and so does the input.
            self.queue.append(req)
            self.read_paused = True
            self._stop_reading()

    def _answer(self, req: _Request) -> None:
        try:
            self._handle(req)
        except Exception:
            # Never a stack trace to the client: log it, answer a plain 500.
            log.exception("error answering %s", req.url[:200])
            self._fail(INTERNAL, req)

    def _scope(self, req: _Request) -> Scope:
        url = httptools.parse_url(req.url)
        raw_path: bytes = url.path or b"/"
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": req.version,
            "method": req.method,
            "scheme": "http",
            "path": raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": req.headers,
            "client": self.peer,
            "server": self.local,
        }

    def _handle(self, req: _Request) -> None:
        if self.closing:
            return
        if req.error is not None:
            self._fail(req.error, req)
            return
        if req.too_large:
            self._fail(too_large(self.app.max_body), req)
            return
        try:
            scope = self._scope(req)
        except httptools.HttpParserInvalidURLError:
            self._fail(HTTPError(400, "bad_path", "the request target is not a valid URL"), req)
            return
        fast = self.app.fast(scope)
        if fast is None:
            self.active = req
            self.task = self.loop.create_task(self._run(scope, req))
            return
        self.since = req.since
        self._send(fast, self._keep(req), req.method == "HEAD")
        self._forget(req)

    def _keep(self, req: _Request) -> int:
        # An answer before the whole body came (a refused Expect: 100-continue)
        # closes: what the client sends next may be that body or a new request.
        if not req.keep_alive or not req.complete or req.error is not None:
            return CLOSE
        return KEEP_ALIVE_1_0 if req.version == "1.0" else KEEP

    async def _run(self, scope: Scope, req: _Request) -> None:
        start: Message = {}
        chunks: list[bytes] = []
        sent_request = False
        head = req.method == "HEAD"
        keep = CLOSE  # how the connection goes on, known once the answer is written
        # A body sent in pieces (`more_body`) is written as it comes: chunked, or
        # for HTTP/1.0 delimited by closing. None: not streaming (yet).
        stream: bool | None = None
        ended = False

        async def receive() -> Message:
            nonlocal sent_request
            if sent_request:
                # ASGI: once the body is read, the next receive waits for the end.
                await self.until_gone()
                return {"type": "http.disconnect"}
            sent_request = True
            if not req.complete and req.error is None and not req.too_large:
                transport = self.transport
                if req.expect and not req.continued and transport is not None:
                    # Only now, and only after every answer before this one.
                    req.continued = True
                    self.body_since = self.loop.time()  # the body is asked for now
                    if not transport.is_closing():
                        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                req.waiter = self.loop.create_future()
                await req.waiter
            if req.error is not None:
                raise req.error
            if req.too_large:
                raise too_large(self.app.max_body)
            if not req.complete:
                return {"type": "http.disconnect"}
            body = bytes(req.body)
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal stream, ended, keep
            kind = message["type"]
            if kind == "http.response.start":
                start.update(message)
                return
            if kind != "http.response.body" or ended:
                return
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if stream is None and not more:
                chunks.append(body)  # the common case: a whole answer, written below
                return
            transport = self.transport
            if transport is None or transport.is_closing():
                raise ClientGone("the client has gone")
            if stream is None:
                # HTTP/1.0 has no chunks: the body ends where the connection does.
                chunked = req.version != "1.0"
                keep = self._keep(req) if chunked else CLOSE
                self.since = req.since
                self._write_stream_head(start, b"".join(chunks), keep, head, chunked)
                stream = chunked
            if body and not head:
                transport.write(chunk(body) if stream else body)
            if not more:
                ended = True
                if stream and not head:
                    transport.write(chunk(b""))
            self.last_active = self.loop.time()
            # Back-pressure: a client that does not read holds the stream, not memory.
            await self.until_drained()

        try:
            await self.app(scope, receive, send)
        except ClientGone:
            pass
        except Exception:
            log.exception("error answering %s %s", req.method, scope["path"])
            if stream is None:
                start.clear()
        if stream is not None:
            if not ended or not keep or self.draining:
                # A stream the handler never ended (or that failed) cannot be
                # answered otherwise: the client sees it cut short.
                self.close()
        elif start:
            keep = self._keep(req)
            self.since = req.since
            content_type, headers = _asgi_head(start)
            answer = b"".join(chunks)
            self._write(start["status"], content_type, headers, answer, keep, head)
        else:
            self.since = req.since
            self._send(self.app.refused(INTERNAL, scope), self._keep(req), head)
        self._forget(req)
        self.task = None
        self.active = None
        self.last_active = self.loop.time()
        self._proceed()

    def _write_stream_head(
        self, start: Message, first: bytes, keep: int, head: bool, chunked: bool
    ) -> None:
        """Write a streamed answer's head, and any body sent before it in one piece."""
        assert self.transport is not None
        content_type, headers = _asgi_head(start)
        _, headers = self._framing(keep, headers)
        self._observe(self.loop.time())
        try:
            data = encode_stream_head(start["status"], content_type, headers, chunked)
        except BadHeader as exc:
            # Nothing written yet: the handler's answer becomes a plain 500.
            log.error("refusing to send a header with CR or LF: %r", exc.args[0][:200])
            start.clear()
            raise ClientGone("the answer's head is not valid") from None
        self.transport.write(data)
        if first and not head:
            self.transport.write(chunk(first) if chunked else first)

    def _forget(self, req: _Request) -> None:
        """Drop a request's body from the count of bytes held across connections."""
        if req.size:
            self.server.body_bytes -= req.size
            req.size = 0
            req.body = bytearray()

    def _fail(self, err: HTTPError, req: _Request) -> None:
        """Answer an error and close the connection."""
        where = {"method": req.method or "-", "path": req.url[:200].decode("latin-1")}
        self._forget(req)
        self.since = req.since
        self._send(self.app.refused(err, where), CLOSE, False)

    def _send(self, resp: Response, keep: int, head: bool) -> None:
        self._write(resp.status, resp.content_type, resp.headers, resp.body, keep, head)

    def _write(
        self,
        status: int,
        content_type: bytes,
        headers: Headers,
        body: bytes,
        keep: int,
        head: bool,
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = self.loop.time()
        self._observe(now)
        if keep != KEEP or self.closing or self.draining:  # the common case adds nothing
            keep, headers = self._framing(keep, headers)
        try:
            data = encode(status, content_type, headers, body, head)
        except BadHeader as exc:
            # Never a header that would split the answer (RFC 9110 §5.5): a 500 instead.
            log.error("refusing to send a header with CR or LF: %r", exc.args[0][:200])
            err = self.app.refused(INTERNAL, {"method": "-", "path": ""})
            data = encode(
                err.status, err.content_type, [*err.headers, CLOSE_HEADER], err.body, head
            )
            keep = CLOSE
        transport.write(data)
        self.last_active = now
        if not keep:
            self.closing = True
            if self.broken and transport.can_write_eof():
                self._linger(transport)
            else:
                transport.close()

    def _observe(self, now: float) -> None:
        """The latency of the answer going out at `now`, from its request's first byte."""
        if self.since:
            self.server.latency.observe(now - self.since)
            self.since = 0.0

    def _framing(self, keep: int, headers: Headers) -> tuple[int, Headers]:
        """How the connection goes on after this answer, and the header that says so."""
        if not keep or self.closing or self.draining:
            return CLOSE, [*headers, CLOSE_HEADER]
        if keep == KEEP_ALIVE_1_0:
            return keep, [*headers, (b"connection", b"keep-alive")]
        return keep, headers

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close a refused connection gently: end our side, drop what the client still
        sends (`data_received` ignores it now) until it closes or LINGER passes."""
        transport.write_eof()
        self.lingering = True
        if not self.reading:
            self.reading = True
            transport.resume_reading()
        self.loop.call_later(LINGER, self.close)


def _asgi_head(start: Message) -> tuple[bytes, Headers]:
    """An ASGI answer's content type and other headers; the framing headers are the
    server's to write."""
    content_type = b"application/octet-stream"
    headers: Headers = []
    for k, v in start.get("headers", ()):
        if k == b"content-type":
            content_type = v
        elif k not in (b"content-length", b"transfer-encoding", b"connection"):
            headers.append((k, v))
    return content_type, headers


def _headers_too_large() -> HTTPError:
    return HTTPError(431, "headers_too_large", f"the request headers are over {MAX_HEADERS} bytes")


@dataclass(frozen=True)
class Limits:
    """The server's timeouts and caps (flags --header-timeout and the others)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections: int = 10_000
    max_body_buffered: int = 64 << 20


class HTTPServer:
    def __init__(
        self, app: Application, limits: Limits | None = None, latency: Histogram | None = None
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.latency = latency or Histogram()
        self.connections: set[Connection] = set()
        self._closing: deque[asyncio.Transport] = deque()
        self._closer: asyncio.Handle | None = None
        self.body_bytes = 0  # request body bytes held, across connections
        self._listener: Listener | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        raise_fd_limit()
        self._listener = Listener(
            sock, lambda made: Connection(self, made), self._refusal, self.shed
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="http-idle")

    def _refusal(self, starting: int) -> bytes | None:
        # Accepted sockets become connections a loop turn later (`starting`): counting
        # only the made ones let a burst of accepts pass the cap by a whole batch.
        if len(self.connections) + starting < self.limits.max_connections:
            return None
        busy = HTTPError(
            503,
            "too_many_connections",
            f"over {self.limits.max_connections} connections are open; retry shortly",
            [(b"retry-after", b"1")],
        )
        resp = self.app.refused(busy, {"method": "-", "path": ""})
        return encode(
            resp.status, resp.content_type, [*resp.headers, CLOSE_HEADER], resp.body, False
        )

    def close_soon(self, transport: asyncio.Transport) -> None:
        """Close a transport within a few turns of the loop, CLOSE_BATCH a turn.

        A connection's teardown (its close(2) and connection_lost) runs a turn after
        `close`, about 15 µs each: a crowd of slow clients closing together (or
        refused together) tore down 4,000 in one turn, and an honest request waited
        50-160 ms behind them."""
        self._closing.append(transport)
        if self._closer is None:
            self._closer = asyncio.get_running_loop().call_soon(self._close_some)

    def _close_some(self) -> None:
        closing = self._closing
        for _ in range(min(CLOSE_BATCH, len(closing))):
            transport = closing.popleft()
            if not transport.is_closing():
                transport.close()
        self._closer = asyncio.get_running_loop().call_soon(self._close_some) if closing else None

    def shed(self) -> int:
        """Close connections by `Connection.shed_rank`, a 32nd of them (at least 16), to
        free descriptors; returns how many. Called each time `accept` runs out of them."""
        most = max(16, len(self.connections) // 32)
        ranked = heapq.nsmallest(
            most,
            ((rank, id(c), c) for c in self.connections if (rank := c.shed_rank()) is not None),
        )
        for _, _, conn in ranked:
            conn.close(at_once=True)
        return len(ranked)

    async def _sweep(self) -> None:
        # One timer for all connections: a timer per request cost 5% of a badge view.
        # A pass works in paced turns of the loop: slowloris heads opened together
        # fall late together, and refusing 5,000 of them in one go held every other
        # client for 0.3-0.8 s.
        loop = asyncio.get_running_loop()
        limits = self.limits
        every = max(0.05, min(1.0, limits.header_timeout / 4, limits.keepalive_timeout / 4))
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            pace = Pace(SWEEP_TURN)
            for looked, conn in enumerate(list(self.connections), 1):
                acted = conn.check(now)
                if (acted or looked % SWEEP_CHECK == 0) and await pace.turn():
                    now = loop.time()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting; close idle connections at once; let the requests under way
        (uploads too) finish for up to `timeout` seconds, then cancel the rest."""
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Each connection closes itself once its answer is written; a poll is enough
        # for a stop, and the sweep still closes a body that stops arriving.
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.connections:
            busy = len(self.connections)
            log.warning("%d connection(s) still busy after %g s: closing them", busy, timeout)
        tasks = [c.task for c in self.connections if c.task is not None]
        for task in tasks:
            task.cancel()
        for conn in list(self.connections):
            conn.close()
        if tasks:
            await asyncio.wait(tasks)
