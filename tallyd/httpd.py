"""tallyd's HTTP/1.1 server: httptools parsing on the event loop, no task per fast request.

A badge view is the hottest request tallyd serves, and a general ASGI server spends
most of its time around the application: on this project's 2-core machine uvicorn
answered a do-nothing handler ~9k times a second while a bare asyncio protocol with
the same parser answered ~45k (docs/http-server.md). So requests are parsed here and
first offered to `App.fast`, which answers a cached badge synchronously; everything
else goes to the app's ASGI entry point in a task, one request at a time per
connection (pipelined requests queue in order).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, Protocol, cast

import httptools

from tallyd.plainget import plain_get
from tallyd.web import INTERNAL, Headers, HTTPError, Message, Response, Scope, too_large

log = logging.getLogger("tallyd.http")

KEEPALIVE: Final = 5.0
MAX_URL: Final = 8 * 1024
MAX_HEADERS: Final = 64 * 1024
MAX_QUEUED: Final = 64
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


def encode(status: int, content_type: bytes, headers: Headers, body: bytes, head: bool) -> bytes:
    """A response on the wire; the fixed lines of each kind are joined once and kept.

    A 204 (a CORS preflight) carries no body, so neither a type nor a length
    (RFC 9110 §8.6: a 204 must not send Content-Length).
    """
    key = (status, content_type, tuple(headers))
    fixed = _heads.get(key)
    if fixed is None:
        fixed = b"".join(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
                b"" if status == 204 else b"content-type: " + content_type + b"\r\n",
                *(k + b": " + v + b"\r\n" for k, v in headers),
            ]
        )
        if len(_heads) < 1024:
            _heads[key] = fixed
    if status == 204:
        return b"".join((fixed, _clock.date(), b"\r\n"))
    size = len(body)
    length = _lengths.get(size)
    if length is None:
        length = b"content-length: %d\r\n\r\n" % size
        if len(_lengths) < 4096:
            _lengths[size] = length
    return b"".join((fixed, _clock.date(), length, b"" if head else body))


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "too_large", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.method = ""
        self.keep_alive = True
        self.too_large = False


class Connection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.current = _Request()
        self.size = 0
        self.head_size = 0
        self.queue: deque[_Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.last_active = self.loop.time()
        self.closing = False
        # httptools is between requests: the next bytes may be read by `plain_get`.
        self.between = True

    # -- the connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.queue.clear()
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.between and self.task is None and not self.queue:
            # Plain GETs at the front are read and answered here (see plainget.py);
            # the first other request, and all after it, go to httptools.
            start = 0
            size = len(data)
            while start < size and not self.closing:
                req = plain_get(data, start)
                if req is None:
                    break
                end, path, query, agent, forwarded, keep_alive = req
                resp = self.app.fast_get(path, query, agent, forwarded, self.peer)
                if resp is None:
                    break
                self._send(resp, keep_alive, False)
                start = end
            if start:
                if start >= size or self.closing:
                    return
                data = data[start:]
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HTTPError(400, "upgrade_unsupported", "tallyd speaks plain HTTP/1.1"))
        except httptools.HttpParserError as exc:
            # A callback's exception (the size limits below) comes wrapped.
            cause = exc.__context__
            if isinstance(cause, HTTPError):
                self._fail(cause)
            else:
                self._fail(HTTPError(400, "bad_request", "the request is not valid HTTP/1.1"))

    def pause_writing(self) -> None:
        # A client that does not read its answers stops being read from.
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        if not self.closing:
            self.transport.resume_reading()

    def idle_for(self, now: float) -> float:
        """Seconds since the last request or answer; 0 while one is under way."""
        return 0.0 if self.task is not None or self.queue else now - self.last_active

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle, else after the answer in progress."""
        self.closing = True
        if self.task is None:
            self.close()

    def _fail(self, err: HTTPError, req: _Request | None = None) -> None:
        """Answer an error and close the connection."""
        req = req or self.current
        where = {"method": req.method or "-", "path": req.url[:200].decode("latin-1")}
        self._send(self.app.refused(err, where), False, False)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.between = False
        self.current = _Request()
        self.size = 0
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        if len(self.current.url) > MAX_URL:
            raise HTTPError(414, "uri_too_long", f"the request target is over {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEADERS:
            raise HTTPError(
                431, "headers_too_large", f"the request headers are over {MAX_HEADERS} bytes"
            )
        self.current.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        req = self.current
        req.method = self.parser.get_method().decode("ascii", "replace")
        req.keep_alive = self.parser.should_keep_alive()
        for name, value in req.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.app.max_body:
                req.too_large = True
            elif name == b"expect" and value.lower() == b"100-continue" and not req.too_large:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        req = self.current
        if req.too_large:
            return
        self.size += len(chunk)
        if self.size > self.app.max_body:
            req.too_large = True
            req.body.clear()
        else:
            req.body.append(chunk)

    def on_message_complete(self) -> None:
        self.between = True
        if self.task is not None or self.queue:
            self.queue.append(self.current)
            if len(self.queue) >= MAX_QUEUED and self.transport is not None:
                self.transport.pause_reading()
        else:
            try:
                self._handle(self.current)
            except Exception:
                # Never a stack trace to the client: log it, answer a plain 500.
                log.exception("error answering %s", self.current.url[:200])
                self._fail(INTERNAL)

    # -- answering -----------------------------------------------------------------

    def _scope(self, req: _Request) -> Scope:
        url = httptools.parse_url(req.url)
        raw_path: bytes = url.path or b"/"
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1" if req.keep_alive else "1.0",
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
        while True:
            if self.closing:
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
                self.task = self.loop.create_task(self._run(scope, req))
                return
            self._send(fast, req.keep_alive, req.method == "HEAD")
            if not self.queue:
                return
            req = self.queue.popleft()

    async def _run(self, scope: Scope, req: _Request) -> None:
        body = b"".join(req.body)
        start: Message = {}
        chunks: list[bytes] = []
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("error answering %s %s", req.method, scope["path"])
            start.clear()
        head = req.method == "HEAD"
        if start:
            content_type = b"application/octet-stream"
            headers: Headers = []
            for k, v in start.get("headers", ()):
                if k == b"content-type":
                    content_type = v
                elif k != b"content-length":
                    headers.append((k, v))
            answer = b"".join(chunks)
            self._write(start["status"], content_type, headers, answer, req.keep_alive, head)
        else:
            self._send(self.app.refused(INTERNAL, scope), req.keep_alive, head)
        self.task = None
        if self.queue and not self.closing:
            if self.transport is not None and len(self.queue) < MAX_QUEUED:
                self.transport.resume_reading()
            self._handle(self.queue.popleft())
        elif self.closing:
            self.close()
        self.last_active = self.loop.time()

    def _send(self, resp: Response, keep: bool, head: bool) -> None:
        self._write(resp.status, resp.content_type, resp.headers, resp.body, keep, head)

    def _write(
        self,
        status: int,
        content_type: bytes,
        headers: Headers,
        body: bytes,
        keep: bool,
        head: bool,
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not keep or self.closing:
            headers = [*headers, (b"connection", b"close")]
        transport.write(encode(status, content_type, headers, body, head))
        if not keep or self.closing:
            self.closing = True
            transport.close()


class HTTPServer:
    def __init__(self, app: Application) -> None:
        self.app = app
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: Any) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=2048)
        self._sweeper = asyncio.create_task(self._sweep(), name="http-idle")

    async def _sweep(self) -> None:
        # One timer for all connections: a timer per request cost 5% of a badge view.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in list(self.connections):
                if conn.idle_for(now) > KEEPALIVE:
                    conn.close()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, finish the answers in progress, close every connection."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.shutdown()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for conn in list(self.connections):
            conn.close()
