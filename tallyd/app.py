"""The ASGI application: answers each request by its route (`tallyd/routes.py`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tallyd.aggregator import Aggregator
from tallyd.badges.counts import BadgeCounts
from tallyd.badges.http import NO_CACHE, badge_now, error_badge, visitor_headers
from tallyd.dashboard.live import Live
from tallyd.dashboard.page import Dashboard
from tallyd.events import Rejected, RejectLog
from tallyd.intake import Intake
from tallyd.metrics import Metrics
from tallyd.openapi import document
from tallyd.owner import Gate, Owner
from tallyd.router import Answer, Match, Router
from tallyd.routes import ROUTES, miss
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
    badge_space,
    check_callback,
    client_address,
    error_response,
    json_response,
    jsonp,
    send_response,
    send_stream,
)

log = logging.getLogger("tallyd.http")

ROUTER = Router(ROUTES)
# The document of the default routes (an app given other routes serves its own).
OPENAPI = orjson.dumps(document(ROUTER.document()))


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
    router: Router = ROUTER
    # Owner actions (tallyd/owner.py); off, and refused, until given a token.
    owner: Owner = field(init=False)
    openapi: bytes = field(init=False)
    badge_headers: Headers = field(init=False)
    _refusals: RejectLog = field(init=False)
    dashboard: Dashboard = field(init=False)
    live: Live = field(init=False)

    def __post_init__(self) -> None:
        self._refusals = RejectLog(log, what="refused")
        self.dashboard = Dashboard(self.stats, self.intake.breakdowns)
        self.live = Live(self.aggregator, self.metrics)
        self.owner = Owner(Gate(""), self.stats, self.aggregator, self.badges)
        # Every badge answer carries these; one list, so the server joins them once.
        self.badge_headers = [*NO_CACHE, *self.cors.headers(BADGE)]
        routed = self.router is ROUTER
        self.openapi = OPENAPI if routed else orjson.dumps(document(self.router.document()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        share: str | None = None
        try:
            req = Request(scope)
            found = self.router.find(req.segments)
            if found is not None:
                share = found.path.share
                if req.method == "OPTIONS" and share is not None:
                    preflight = self.cors.preflight(share, found.path.shared, req.headers)
                    await send_response(send, preflight)
                    return
            answer = await self.route(req, receive, found)
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
            # Badges carry theirs already (see `badge_headers`).
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
                self.badge_headers,
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
        if err.status != 500:  # a 500 is logged, with its traceback, where it happened
            # One clock per kind of refusal, not per target: a crowd of slow heads, each
            # with a target of its own, is one line a second, naming the latest.
            where = f"({scope.get('method')} {path[:200]})"
            self._refusals(f"HTTP {err.status}", Rejected(err.error, f"{err.detail} {where}"))
        raw_path: bytes = scope.get("raw_path") or path.encode("latin-1", "replace")
        if scope.get("method") in ("GET", "HEAD") and badge_space(raw_path):
            query: bytes = scope.get("query_string", b"")
            return error_badge(err, raw_path, query, self.badge_headers)
        return error_response(err)

    async def route(self, req: Request, receive: Receive, found: Match | None) -> Answer:
        """The answer of the route `found` for this request (`Router.find`), a 405 for a
        method it does not take, or a 404."""
        if found is None:
            raise miss(req)
        route = found.path.route(req.method)
        return await route.handler(self, req, receive, found.params)

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


async def _lifespan(receive: Receive, send: Send) -> None:
    # Start-up and shutdown are ordered by the server module, not by ASGI lifespan.
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
