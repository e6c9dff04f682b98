"""The badge endpoints: `/badge.svg?repo=` (the seed's URL), `/badge/{id}.svg` and `.json`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import orjson

from tallyd.aggregator import Overloaded
from tallyd.badges.counts import BadgeCounts
from tallyd.badges.metrics import normalize_color
from tallyd.badges.params import BadgeParams, check_id, parse_params
from tallyd.badges.render import template
from tallyd.stores import StoreError
from tallyd.web import JSON, Headers, HTTPError, Request, Response, client_address, split_path

SVG: Final = b"image/svg+xml; charset=utf-8"
# No cache may keep a badge: GitHub's image proxy then fetches it on every view.
NO_CACHE: Final = [
    (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate"),
    (b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"),
    (b"pragma", b"no-cache"),
]


@dataclass(frozen=True, slots=True)
class Target:
    """What a badge URL asks for, validated once per distinct URL."""

    ident: str
    kind: str  # "svg" or "json"
    params: BadgeParams
    draw: Callable[[str], str]


@lru_cache(maxsize=16_384)
def badge_target(raw_path: bytes, query: bytes) -> Target:
    """The target of `/badge.svg?repo=ID` or `/badge/ID.svg|.json`, or a 400/404."""
    params, repo = parse_params(query)
    draw = template(params.style, params.label, params.color, params.label_color)
    seg = split_path(raw_path.decode("latin-1"), decode=True)
    if seg == ["badge.svg"]:
        if repo is None:
            raise HTTPError(400, "missing_repo", "use /badge.svg?repo=owner/name")
        return Target(repo, "svg", params, draw)
    name, dot, kind = seg[-1].rpartition(".") if len(seg) >= 2 else ("", "", "")
    if seg[0] != "badge" or not dot or kind not in ("svg", "json") or not name:
        raise HTTPError(404, "not_found", "badges are /badge/{id}.svg or /badge/{id}.json")
    return Target(check_id("/".join([*seg[1:-1], name])), kind, params, draw)


def badge_now(
    counts: BadgeCounts, raw_path: bytes, query: bytes, client: str, user_agent: bytes
) -> Response | None:
    """The answer to a GET without awaiting anything, when the figure is cached; else None.

    The HTTP server calls this before it starts a task for a request: most views
    of a badge end here, counted and drawn in one pass.
    """
    t = badge_target(raw_path, query)
    params = t.params
    try:
        shown = counts.hit(
            t.ident, params.event, params.metric, params.increment, client, user_agent
        )
    except Overloaded as exc:
        raise _busy(exc) from None
    if shown is None:
        return None
    return _answer(200, t, params.message(shown))


async def badge(counts: BadgeCounts, req: Request) -> Response:
    scope = req.scope
    t = badge_target(scope.get("raw_path") or scope["path"].encode(), req.query_string)
    if req.method not in ("GET", "HEAD"):
        raise HTTPError(405, "method_not_allowed", "use GET", [(b"allow", b"GET, HEAD")])
    visitor = ""
    if t.params.increment and req.method == "GET":
        agent, forwarded = visitor_headers(scope["headers"])
        visitor = _view(counts, t, client_address(scope.get("client"), forwarded), agent)
    try:
        figure = await counts.read(t.ident, t.params.event, t.params.metric, visitor)
    except StoreError:
        # The view is counted in memory; the figure needs the store.
        return _answer(503, t, "unavailable")
    return _answer(200, t, t.params.message(figure))


def visitor_headers(headers: Headers) -> tuple[bytes, bytes]:
    """(User-Agent, X-Forwarded-For) of a request, empty when absent."""
    agent = forwarded = b""
    for name, value in headers:
        if name == b"user-agent":
            agent = value
        elif name == b"x-forwarded-for":
            forwarded = value
    return agent, forwarded


def _view(counts: BadgeCounts, t: Target, client: str, user_agent: bytes) -> str:
    try:
        return counts.view(t.ident, t.params.event, client, user_agent)
    except Overloaded as exc:
        raise _busy(exc) from None


def _busy(exc: Overloaded) -> HTTPError:
    return HTTPError(503, "overloaded", str(exc), [(b"retry-after", b"1")])


def _answer(status: int, t: Target, message: str) -> Response:
    if t.kind == "json":
        return Response(status, _endpoint_json(t.params, message), JSON, NO_CACHE)
    return Response(status, t.draw(message).encode(), SVG, NO_CACHE)


def _endpoint_json(params: BadgeParams, message: str) -> bytes:
    """shields.io's endpoint schema, so `img.shields.io/endpoint?url=` can draw it."""
    doc: dict[str, object] = {
        "schemaVersion": 1,
        "label": params.label,
        "message": message,
        "color": normalize_color(params.color) or "brightgreen",
    }
    if params.label_color:
        doc["labelColor"] = normalize_color(params.label_color)
    if params.style != "flat":
        doc["style"] = params.style
    return orjson.dumps(doc)
