"""The ASGI application: routes requests to the API, ingest and operations."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tallyd import api
from tallyd.aggregator import Aggregator
from tallyd.badges.counts import BadgeCounts
from tallyd.badges.http import NO_CACHE, badge, badge_now, error_badge, visitor_headers
from tallyd.dashboard import assets
from tallyd.dashboard.live import Live
from tallyd.dashboard.page import Dashboard
from tallyd.events import Rejected, RejectLog
from tallyd.ingest.http import post_events
from tallyd.intake import Intake
from tallyd.metrics import Metrics
from tallyd.openapi import DOCUMENT
from tallyd.stats import Stats
from tallyd.stores import StoreError, public_error
from tallyd.web import (
    BADGE,
    INTERNAL,
    NO_STORE,
    Cors,
    Headers,
    HTTPError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    Streamed,
    check_callback,
    client_address,
    error_response,
    json_response,
    jsonp,
    read_body,
    send_response,
    send_stream,
    share_of,
)

log = logging.getLogger("tallyd.http")

OPENAPI = orjson.dumps(DOCUMENT)


@dataclass
class App:
    """Everything a request may need, and the ASGI entry point."""

    stats: Stats
    aggregator: Aggregator
    intake: Intake
    metrics: Metrics
    badges: BadgeCounts
    max_body: int = 1 << 20
    store_url: str = ""
    cors: Cors = field(default_factory=Cors)
    # Which worker process answers (`--workers`); None when there is one process.
    worker: int | None = None
    _refusals: RejectLog = field(init=False)
    _badge_headers: Headers = field(init=False)
    dashboard: Dashboard = field(init=False)
    live: Live = field(init=False)

    def __post_init__(self) -> None:
        self._refusals = RejectLog(log, what="refused")
        self.dashboard = Dashboard(self.stats, self.intake.breakdowns)
        self.live = Live(self.aggregator, self.metrics)
        # Every badge answer carries these; one list, so the server joins them once.
        self._badge_headers = [*NO_CACHE, *self.cors.headers(BADGE)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        share = share_of(scope.get("raw_path") or scope["path"].encode())
        try:
            req = Request(scope)
            if req.method == "OPTIONS" and share is not None:
                await send_response(send, self.cors.preflight(share, req.headers))
                return
            answer = await self.route(req, receive)
            if isinstance(answer, Streamed):
                answer.headers += self.cors.headers(share)
                await send_stream(receive, send, answer)
                return
            resp = answer
            callback = req.query.get("callback") if req.query_string else None
            if callback is not None and resp.content_type == b"application/json":
                resp = jsonp(resp, check_callback(callback))
        except HTTPError as err:
            resp = self.refused(err, scope)
        except StoreError as exc:
            # Counting goes on in memory; reading needs the store.
            detail = public_error(str(exc))  # the log may name hosts; a client may not
            unavailable = HTTPError(503, "store_unavailable", detail, [(b"retry-after", b"1")])
            resp = self.refused(unavailable, scope)
        except Exception:
            # Never a stack trace to the client: log it, answer a plain 500.
            log.exception("error answering %s %s", scope.get("method"), scope.get("path"))
            resp = self.refused(INTERNAL, scope)
        if share is not None and share != BADGE:
            # Badges carry theirs already (see `_badge_headers`).
            resp.headers = [*resp.headers, *self.cors.headers(share)]
        await send_response(send, resp)

    def fast(self, scope: Scope) -> Response | None:
        """A badge view answered without awaiting anything, or None (see httpd.py)."""
        if scope["method"] != "GET":
            return None
        agent, forwarded = visitor_headers(scope["headers"])
        return self.fast_get(
            scope["raw_path"], scope["query_string"], agent, forwarded, scope["client"]
        )

    def fast_get(
        self,
        raw_path: bytes,
        query: bytes,
        user_agent: bytes,
        forwarded: bytes,
        client: tuple[str, int] | None,
    ) -> Response | None:
        """`fast` for a GET the server read itself (`plainget`), without a scope."""
        if not raw_path.startswith(b"/badge") or b"callback" in query:
            return None
        try:
            return badge_now(
                self.badges,
                self._badge_headers,
                raw_path,
                query,
                client_address(client, forwarded),
                user_agent,
            )
        except HTTPError as err:
            scope = {"method": "GET", "path": raw_path.decode("latin-1"), "query_string": query}
            return self.refused(err, scope)

    def refused(self, err: HTTPError, scope: Scope) -> Response:
        """A 4xx/5xx answer, counted in /metrics and logged at most once a second.

        On a badge URL it is an error badge (status 200, see badges/http.py): an
        image is what asked for it, and an image is what can show the reason.
        """
        self.metrics.http_error(err.status, err.error)
        path: str = scope.get("path", "")
        if err.status < 500:
            # One clock per kind of refusal, not per target: a crowd of slow heads, each
            # with a target of its own, is one line a second, naming the latest.
            where = f"({scope.get('method')} {path[:200]})"
            self._refusals(f"HTTP {err.status}", Rejected(err.error, f"{err.detail} {where}"))
        raw_path: bytes = scope.get("raw_path") or path.encode("latin-1", "replace")
        if scope.get("method") in ("GET", "HEAD") and share_of(raw_path) == BADGE:
            query: bytes = scope.get("query_string", b"")
            return error_badge(err, raw_path, query, self._badge_headers)
        return error_response(err)

    async def route(self, req: Request, receive: Receive) -> Response | Streamed:
        seg = req.segments
        head = seg[0] if seg else ""
        if head == "badge" or (head in ("badge.svg", "badge.json") and len(seg) == 1):
            return await badge(self.badges, self._badge_headers, req)
        if head == "api" and len(seg) >= 2:
            return await self._api(req, receive, seg[1:])
        if len(seg) == 1:
            if head == "healthz":
                _only(req, "GET", "HEAD")
                return self.health()
            if head == "metrics":
                _only(req, "GET", "HEAD")
                return Response(
                    200,
                    self.metrics.render().encode(),
                    b"text/plain; version=0.0.4; charset=utf-8",
                    [NO_STORE],
                )
            if head == "openapi.json":
                _only(req, "GET", "HEAD")
                return Response(200, OPENAPI)
        if not seg:
            _only(req, "GET", "HEAD")
            return await self.dashboard.page(req)
        if head == "dashboard" and len(seg) == 2:
            _only(req, "GET", "HEAD")
            return assets.serve(seg[1], req)
        raise HTTPError(404, "not_found", "no such path; see /openapi.json")

    async def _api(self, req: Request, receive: Receive, seg: list[str]) -> Response | Streamed:
        head = seg[0]
        if head == "events" and len(seg) == 1:
            _only(req, "POST")
            wait = req.query.get("wait")
            if wait not in (None, "flush"):
                raise HTTPError(400, "bad_wait", "wait takes one value: wait=flush")
            if req.headers.get(b"content-encoding", b"identity").lower() != b"identity":
                # A gzip body read as JSON would be refused with a misleading reason.
                raise HTTPError(415, "bad_encoding", "send the body uncompressed")
            body = await read_body(req, receive, self.max_body)
            return await post_events(self.intake, body, wait == "flush")
        if head == "stats" and len(seg) >= 2:
            _only(req, "GET", "HEAD")
            kind, rest = seg[1], seg[2:]
            if kind == "track":
                return await api.track(self.stats, req, rest)
            if kind == "funnels":
                return await api.funnels(self.stats, req, rest)
            if kind == "series" and not rest:
                return await api.series(self.stats, req)
        elif head == "accounts" and len(seg) == 1:
            _only(req, "GET", "HEAD")
            return await api.accounts(self.stats, req)
        elif head == "top" and len(seg) == 1:
            _only(req, "GET", "HEAD")
            return await api.top(self.stats, req)
        elif head == "live" and len(seg) == 1:
            _only(req, "GET", "HEAD")
            return self.live.answer(req)
        raise HTTPError(404, "not_found", "no such path; see /openapi.json")

    def health(self) -> Response:
        agg = self.aggregator
        body: dict[str, Any] = {
            "status": "ok" if agg.healthy else "degraded",
            "store": self.store_url,
            "pending_cells": len(agg.pending),
            "last_flush": agg.last_flush_at or None,
            "time": time.time(),
        }
        if self.worker is not None:
            body["worker"] = self.worker
        if not agg.healthy:
            body["error"] = "journal_unavailable" if agg.journal_down else "store_unavailable"
            body["detail"] = agg.last_error
            return json_response(body, 503, [NO_STORE])
        return json_response(body, 200, [NO_STORE])


def _only(req: Request, *methods: str) -> None:
    if req.method not in methods:
        allow = ", ".join(methods).encode()
        raise HTTPError(
            405, "method_not_allowed", f"use {' or '.join(methods)}", [(b"allow", allow)]
        )


async def _lifespan(receive: Receive, send: Send) -> None:
    # Start-up and shutdown are ordered by the server module, not by ASGI lifespan.
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
