"""The badge endpoints: `/badge.svg?repo=` (the seed's URL), `/badge/{id}.svg` and `.json`."""

from __future__ import annotations

from typing import Final

import orjson

from tallyd.aggregator import Overloaded
from tallyd.badges.counts import BadgeCounts
from tallyd.badges.metrics import normalize_color
from tallyd.badges.params import BadgeParams, check_id, parse_params
from tallyd.badges.render import render
from tallyd.stores import StoreError
from tallyd.web import JSON, HTTPError, Request, Response

SVG: Final = b"image/svg+xml; charset=utf-8"
# No cache may keep a badge: GitHub's image proxy then fetches it on every view.
NO_CACHE: Final = [
    (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate"),
    (b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"),
    (b"pragma", b"no-cache"),
]


def badge_target(req: Request, seg: list[str]) -> tuple[str, str, BadgeParams]:
    """(id, "svg" or "json", parameters) of a badge path, or a 400/404."""
    params, repo = parse_params(req.query_string)
    if seg == ["badge.svg"]:
        if repo is None:
            raise HTTPError(400, "missing_repo", "use /badge.svg?repo=owner/name")
        return repo, "svg", params
    name, dot, kind = seg[-1].rpartition(".")
    if not dot or kind not in ("svg", "json") or not name:
        raise HTTPError(404, "not_found", "badges are /badge/{id}.svg or /badge/{id}.json")
    return check_id("/".join([*seg[1:-1], name])), kind, params


async def badge(counts: BadgeCounts, req: Request, seg: list[str]) -> Response:
    ident, kind, params = badge_target(req, seg)
    if req.method not in ("GET", "HEAD"):
        raise HTTPError(405, "method_not_allowed", "use GET", [(b"allow", b"GET, HEAD")])
    counted = params.increment and req.method == "GET"
    if counted:
        try:
            counts.hit(ident, params.event)
        except Overloaded as exc:
            raise HTTPError(503, "overloaded", str(exc), [(b"retry-after", b"1")]) from None
    status = 200
    try:
        client = req.scope.get("client")
        shown = await counts.shown(
            ident,
            params.event,
            params.metric,
            counted,
            client[0] if client else "",
            req.headers.get(b"user-agent", b""),
        )
        message = params.message(shown)
    except StoreError:
        # The hit is counted in memory; the figure needs the store.
        status, message = 503, "unavailable"
    if kind == "json":
        return Response(status, _endpoint_json(params, message), JSON, NO_CACHE)
    svg = render(params.label, message, params.style, params.color, params.label_color)
    return Response(status, svg.encode(), SVG, NO_CACHE)


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
