"""The badge endpoints: `/badge.svg?repo=` (the seed's URL), `/badge/{id}.svg` and `.json`.

Every GET of a badge URL answers a badge, errors included, and with status 200:
GitHub's image proxy (camo) turns any other status into an empty 404, so a README
would show a broken image instead of the reason. The reason is in `X-Tallyd-Error`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import orjson

from tallyd.aggregator import Overloaded
from tallyd.badges.counts import BadgeCounts, Shown
from tallyd.badges.logos import logo_svg
from tallyd.badges.metrics import normalize_color
from tallyd.badges.params import BadgeParams, check_id, fallback, format_count, parse_params
from tallyd.badges.render import clean, template
from tallyd.badges.spark import sparkline
from tallyd.limits import Limited, is_camo
from tallyd.rules import ROLLUP, reserved
from tallyd.stores import StoreError, public_error
from tallyd.web import JSON, Headers, HTTPError, Request, Response, client_address, split_path

SVG: Final = b"image/svg+xml; charset=utf-8"
# No cache may keep a badge: GitHub's image proxy then fetches it on every view.
NO_CACHE: Final = [
    (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate"),
    (b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"),
    (b"pragma", b"no-cache"),
]
# shields.io keeps an endpoint's answer at least this long, whatever it is told.
ENDPOINT_CACHE_SECONDS: Final = 300
# Bad input is the badge's author's to fix; the rest is the server's trouble (shields' colours).
INPUT_ERROR: Final = "red"
SERVER_ERROR: Final = "lightgrey"
_ERROR_MESSAGES: Final = {
    "not_found": "unknown badge",
    "overloaded": "overloaded",
    "store_unavailable": "unavailable",
    "internal": "error",
}


@dataclass(frozen=True, slots=True)
class Target:
    """What a badge URL asks for, validated once per distinct URL."""

    ident: str
    kind: str  # "svg" or "json"
    params: BadgeParams
    draw: Callable[[str], bytes]
    count: bool  # a GET counts a view
    figure: str  # the figure cache's name of the number shown (metric and zone)
    github: bool  # only views through GitHub's image proxy count

    def counts(self, user_agent: bytes) -> bool:
        """Whether a GET with this User-Agent counts a view."""
        return self.count and (not self.github or is_camo(user_agent))


def _target(ident: str, kind: str, params: BadgeParams) -> Target:
    if ident == ROLLUP:
        # Every account's sum is the service's, not a project's: no badge shows it.
        raise HTTPError(400, "reserved_id", "`all` is the rollup of every account, not an id")
    draw = template(
        params.style, params.label, params.color, params.label_color, params.logo, params.theme
    )
    # shields fetches an endpoint for its own cache, not per view: counted only when asked.
    # A rollup (`all`, `owner/*`) is a sum of other ids: viewing it counts nothing.
    count = params.increment if params.increment is not None else kind == "svg"
    count = count and not reserved(ident)
    return Target(ident, kind, params, draw, count, params.figure, params.count == "github")


@lru_cache(maxsize=16_384)
def badge_target(raw_path: bytes, query: bytes) -> Target:
    """The target of `/badge.svg?repo=ID` (or `.json`) or `/badge/ID.svg|.json`, or a
    400/404."""
    params, repo = parse_params(query)
    seg = split_path(raw_path.decode("latin-1"), decode=True)
    if seg in (["badge.svg"], ["badge.json"]):
        if repo is None:
            raise HTTPError(400, "missing_repo", "use /badge.svg?repo=owner/name")
        return _target(repo, seg[0][len("badge.") :], params)
    if seg == ["badge"]:
        raise HTTPError(400, "missing_id", "badges are /badge/{id}.svg or /badge/{id}.json")
    name, dot, kind = seg[-1].rpartition(".") if len(seg) >= 2 else ("", "", "")
    if seg[0] != "badge" or not dot or kind not in ("svg", "json") or not name:
        raise HTTPError(404, "not_found", "badges are /badge/{id}.svg or /badge/{id}.json")
    return _target(check_id("/".join([*seg[1:-1], name])), kind, params)


def badge_now(
    counts: BadgeCounts,
    headers: Headers,
    raw_path: bytes,
    query: bytes,
    client: str,
    user_agent: bytes,
) -> Response | None:
    """The answer to a GET without awaiting anything, when the figure is cached; else None.

    The HTTP server calls this before it starts a task for a request: most views
    of a badge end here, counted and drawn in one pass. `headers` go with the
    answer (the no-cache and CORS headers, built once by the app).
    """
    t = badge_target(raw_path, query)
    params = t.params
    try:
        shown = counts.hit(
            t.ident, params.event, t.figure, t.counts(user_agent), client, user_agent
        )
    except Overloaded as exc:
        raise _busy(exc) from None
    if shown is None:
        return None
    return _answer(t, shown, headers)


async def badge(counts: BadgeCounts, headers: Headers, req: Request) -> Response:
    """A badge read from the store when the figure is not cached (or for HEAD).

    With the store down, a figure this process has drawn before is shown as it was
    last known (see BadgeCounts.read); only a figure never read is an error badge.
    """
    scope = req.scope  # a GET or HEAD: the route table answers other methods (405)
    t = badge_target(scope.get("raw_path") or scope["path"].encode(), req.query_string)
    visitor = ""
    agent, forwarded = visitor_headers(scope["headers"])
    if req.method == "GET" and t.counts(agent):
        visitor = _view(counts, t, client_address(scope.get("client"), forwarded), agent)
    try:
        figure = await counts.read(t.ident, t.params.event, t.figure, visitor)
    except StoreError as exc:
        # The view is counted in memory; the figure needs the store.
        raise HTTPError(503, "store_unavailable", public_error(str(exc))) from None
    return _answer(t, figure, headers)


def error_badge(err: HTTPError, raw_path: bytes, query: bytes, headers: Headers) -> Response:
    """A refusal drawn as a badge (or the endpoint JSON with `isError`), status 200."""
    label, style = fallback(query)
    message = error_message(err.error)
    color = INPUT_ERROR if err.status < 500 else SERVER_ERROR
    headers = [*headers, (b"x-tallyd-error", err.error.encode("latin-1", "replace"))]
    headers += [(k, v) for k, v in err.headers if k == b"retry-after"]
    if raw_path.rstrip(b"/").endswith(b".json"):
        body = _endpoint_json(label, message, color, None, error=True)
        return Response(200, body, JSON, headers)
    return Response(200, template(style, label, color)(message), SVG, headers)


def error_message(code: str) -> str:
    """What an error badge says for an error code: `bad_style` → `invalid style`."""
    kind, _, what = code.partition("_")
    if kind == "bad" and what:
        return f"invalid {what}"
    if kind == "missing" and what:
        return f"missing {what}"
    return _ERROR_MESSAGES.get(code, code.replace("_", " "))


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
    except Limited as exc:
        retry = [(b"retry-after", str(exc.retry_after).encode())]
        raise HTTPError(429, exc.reason, exc.detail, retry) from None


def _busy(exc: Overloaded) -> HTTPError:
    return HTTPError(503, "overloaded", str(exc))


def _answer(t: Target, shown: Shown, headers: Headers) -> Response:
    p = t.params
    if isinstance(shown, list):
        if t.kind == "svg":
            texts = [format_count(n, p.format) for n in shown]
            svg = sparkline(p.label, p.color, p.label_color, shown, texts)
            return Response(200, svg.encode(), SVG, headers)
        # shields draws no line: the endpoint shows the days' total.
        shown = sum(shown)
    message = p.message(shown)
    if t.kind == "json":
        body = _endpoint_json(p.label, message, p.color, p.label_color, error=False, params=p)
        return Response(200, body, JSON, headers)
    return Response(200, t.draw(message), SVG, headers)


def _endpoint_json(
    label: str,
    message: str,
    color: str | None,
    label_color: str | None,
    error: bool,
    params: BadgeParams | None = None,
) -> bytes:
    """shields.io's endpoint schema, so `img.shields.io/endpoint?url=` can draw it.

    shields refuses a document with keys it does not know, so there are no others;
    the style is chosen in the shields URL (`&style=`), as for any shields badge.
    A logo asked for is passed on in shields' own keys: `namedLogo` and `logoColor`
    for a simple-icons name, `logoSvg` for a custom SVG.
    """
    doc: dict[str, object] = {
        "schemaVersion": 1,
        # The same text as the SVG shows: trimmed, without what XML cannot carry.
        "label": clean(label),
        "message": clean(message) or message,
        "color": normalize_color(color) or "brightgreen",
        "labelColor": normalize_color(label_color) or "grey",
        "isError": error,
        "cacheSeconds": ENDPOINT_CACHE_SECONDS,
    }
    if params is not None and params.logo is not None:
        if params.logo_name is not None:
            doc["namedLogo"] = params.logo_name
            if params.logo_color is not None:
                doc["logoColor"] = normalize_color(params.logo_color)
        else:
            doc["logoSvg"] = logo_svg(params.logo)
    return orjson.dumps(doc)
