"""Small ASGI plumbing: requests, responses and JSON errors.

tallyd speaks raw ASGI rather than through a framework: the request paths are
few, and the badge and ingest paths are hot enough that a framework's per-request
layers show up in profiles. Paths are split from `raw_path`, so an account
like `owner/name` sent as `owner%2Fname` stays one path segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
NO_STORE = (b"cache-control", b"no-store, no-cache, must-revalidate, private")
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*")
MAX_CALLBACK = 64
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class HTTPError(Exception):
    """An answer with a status and a JSON `{"error", "detail"}` body."""

    def __init__(
        self, status: int, error: str, detail: str = "", headers: Headers | None = None
    ) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail or error
        self.headers = headers or []


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Headers = field(default_factory=list)


def json_response(obj: Any, status: int = 200, headers: Headers | None = None) -> Response:
    return Response(status, orjson.dumps(obj), JSON, headers or [])


def error_response(err: HTTPError) -> Response:
    body = {"error": err.error, "detail": err.detail}
    return Response(err.status, orjson.dumps(body), JSON, [NO_STORE, *err.headers])


def jsonp(resp: Response, callback: str) -> Response:
    """Wrap a JSON answer for `<script>` use; the name was validated already."""
    # The leading comment defuses content-sniffing attacks on the callback name.
    body = b"/**/" + callback.encode() + b"(" + resp.body + b");"
    return Response(resp.status, body, b"application/javascript; charset=utf-8", resp.headers)


def check_callback(name: str) -> str:
    if len(name) > MAX_CALLBACK or not CALLBACK.fullmatch(name):
        raise HTTPError(
            400, "bad_callback", "callback must be a JavaScript identifier path like cb or a.b"
        )
    return name


class Request:
    """The parts of an ASGI HTTP scope that handlers use."""

    __slots__ = ("_query", "headers", "method", "query_string", "scope", "segments")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        self.segments = split_path(path, decode=bool(raw))
        self.query_string: bytes = scope.get("query_string", b"")
        self._query: dict[str, str] | None = None
        self.headers: dict[bytes, bytes] = dict(scope.get("headers", ()))

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            q: dict[str, str] = {}
            for k, v in parse_qsl(
                self.query_string.decode("latin-1"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="replace",
            ):
                q.setdefault(k, v)
            self._query = q
        return self._query


def split_path(path: str, decode: bool) -> list[str]:
    """`/a/b%2Fc/` → `['a', 'b/c']`; a bad escape is a 400."""
    parts = path.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    if not decode:
        return parts
    if "%" in path and BAD_ESCAPE.search(path):
        raise HTTPError(400, "bad_path", "the path has a malformed %-escape")
    try:
        return [unquote(p, errors="strict") if "%" in p else p for p in parts]
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_path", "the path is not valid percent-encoded UTF-8") from None


async def read_body(request: Request, receive: Receive, limit: int) -> bytes:
    """The whole body, or a 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "bad_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise HTTPError(400, "disconnected", "the client went away")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


# Never a stack trace to the client: a failure is logged and answered with this.
INTERNAL = HTTPError(500, "internal", "an internal error occurred")


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, "too_large", f"the body is larger than {limit} bytes")


async def send_response(send: Send, resp: Response) -> None:
    headers = [
        (b"content-type", resp.content_type),
        (b"content-length", str(len(resp.body)).encode()),
        *resp.headers,
    ]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


@dataclass
class Streamed:
    """An answer sent in pieces as `pieces` makes them (server-sent events), until it
    ends, the client goes or the server stops; see `send_stream`."""

    pieces: AsyncGenerator[bytes, None]
    content_type: bytes
    headers: Headers = field(default_factory=list)
    status: int = 200


async def send_stream(receive: Receive, send: Send, resp: Streamed) -> None:
    """Send each piece as it comes; end the body when `pieces` ends or when a second
    `receive()` says the client went or the server is stopping, and close `pieces`.

    Never raises for a client that went (the server's `send` then raises a
    ConnectionError): there is nobody left to answer.
    """
    pieces = resp.pieces
    piece: asyncio.Future[bytes] | None = None
    gone: asyncio.Future[Message] | None = None
    try:
        # Started first, so that its own clean-up (a `finally`) runs whatever follows.
        first = await anext(pieces)
        await receive()  # the request; the next receive waits for the end
        headers = [(b"content-type", resp.content_type), *resp.headers]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        gone = asyncio.ensure_future(receive())
        while True:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            piece = asyncio.ensure_future(anext(pieces))
            waits: set[asyncio.Future[Any]] = {piece, gone}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                break
            try:
                first = piece.result()
            except StopAsyncIteration:
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (ConnectionError, StopAsyncIteration):
        pass
    finally:
        for task in (piece, gone):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await task
        await pieces.aclose()


# CORS policies: a route's `share` (tallyd/routes.py) names one.
BADGE, READ, INGEST = "badge", "read", "ingest"
# Seconds a browser may reuse a preflight answer (browsers cap it lower anyway).
PREFLIGHT_MAX_AGE = b"86400"
ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+")


def badge_space(raw_path: bytes) -> bool:
    """Whether a path is a badge's URL, right or wrong: its refusals are drawn as badges.

    A prefix test, cheap enough for the badge fast path (`App.fast_get`), which
    answers before any routing.
    """
    path = raw_path.rstrip(b"/")
    return path.startswith(b"/badge/") or path in (b"/badge", b"/badge.svg", b"/badge.json")


def check_origin(value: str, name: str) -> str:
    """`*`, `none` or one origin like https://example.org; else a ValueError naming `name`."""
    if value not in ("*", "none") and not ORIGIN.fullmatch(value):
        raise ValueError(
            f"{name} {value!r}: expected *, none or an origin like https://example.org"
        )
    return value


class Cors:
    """Which answers another origin's scripts may read, and the preflight answers.

    The read API and badges are public by default (`*`); posting events is not
    (`none`), so a page elsewhere cannot count events into this server from its
    visitors' browsers unless that is configured.
    """

    def __init__(self, read: str = "*", ingest: str = "none") -> None:
        self.read = _allow_origin(read)
        self.ingest = _allow_origin(ingest)

    def headers(self, share: str | None) -> Headers:
        if share is None:
            return []
        return self.ingest if share == INGEST else self.read

    def preflight(
        self, share: str, methods: bytes, request_headers: dict[bytes, bytes]
    ) -> Response:
        """The answer to OPTIONS: what may be asked (`methods`, the route table's), and by
        whom (nobody when CORS is off)."""
        headers: Headers = [(b"allow", methods)]
        allow = self.headers(share)
        if allow:
            headers += [
                *allow,
                (b"access-control-allow-methods", methods),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE),
                (b"vary", b"access-control-request-headers"),
            ]
            asked = request_headers.get(b"access-control-request-headers")
            # Echoed only when it is what a browser sends: a short list of header names.
            if asked and len(asked) <= MAX_ASKED_HEADERS and HEADER_NAMES.fullmatch(asked):
                headers.append((b"access-control-allow-headers", asked))
        return Response(204, b"", b"text/plain; charset=utf-8", headers)


# A comma-separated list of HTTP tokens (RFC 9110 §5.6.2), as browsers send it.
HEADER_NAMES = re.compile(
    rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*"
)
MAX_ASKED_HEADERS = 1024


def _allow_origin(origin: str) -> Headers:
    if origin == "none":
        return []
    return [(b"access-control-allow-origin", origin.encode("latin-1"))]


LOOPBACK = frozenset({"127.0.0.1", "::1"})


def client_address(client: tuple[str, int] | None, forwarded: bytes) -> str:
    """The visitor's address: the peer, or what a local proxy says in X-Forwarded-For.

    Only a proxy on this machine is believed (nginx in front of tallyd); it appends
    the address it saw, so the last entry of `forwarded` is the one a client cannot
    forge.
    """
    peer: str = client[0] if client else ""
    if forwarded and peer in LOOPBACK:
        return forwarded.decode("latin-1").rsplit(",", 1)[-1].strip() or peer
    return peer
