"""The route table: every HTTP route of tallyd, its handler and its documentation.

`ROUTES` drives dispatch (`App.route`), the 405 answers and their `Allow`, the
CORS preflights, and the `paths` of `/openapi.json` (see `tallyd/router.py`), so a
route cannot be served without being documented, nor documented without being
served. Badge views are answered before routing when they can be (`App.fast`,
`tallyd/plainget.py`); the badge routes here answer the rest (HEAD, figures not
cached, requests the plain reader did not take).

To add a route, append a `Route` to `ROUTES` (or pass your own list to
`Router` for routes that depend on configuration, such as a prefix):

    Route(
        "/api/things/{account}",          # OpenAPI's template; {name} is one segment
        "DELETE",                         # one method a route; GET also answers HEAD
        _delete_thing,                    # async (app, req, receive, params) -> Response
        {"summary": "...", "responses": {...}},  # the OpenAPI operation object
        (openapi.ACC,),                   # its path parameters, one per {name}
        share=None,                       # CORS policy: web.READ, BADGE, INGEST or None
    )

The handler gets the `App`, the `web.Request`, the ASGI `receive` (for a body:
`web.read_body`) and the path parameters by name, decoded (`owner%2Fname` is
`owner/name`); it returns a `web.Response` (or `web.Streamed`) or raises
`web.HTTPError`. Another method on an existing path is one more `Route` with the
same template (give it the same `parameters`, or none); its 405 `Allow` and the
document follow. `tests/test_routes.py` checks every documented path and method
against a running server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tallyd import api, owner
from tallyd import openapi as doc
from tallyd.badges.http import badge, badge_target
from tallyd.dashboard import assets
from tallyd.ingest.http import post_events
from tallyd.periods import Period
from tallyd.router import Answer, Handler, Params, Route
from tallyd.web import (
    BADGE,
    INGEST,
    NO_STORE,
    READ,
    HTTPError,
    Receive,
    Request,
    Response,
    badge_space,
    read_body,
)

if TYPE_CHECKING:
    from tallyd.app import App


async def _dashboard(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await app.dashboard.page(req)


async def _asset(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return assets.serve(params["asset"], req)


async def _live(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return app.live.answer(req)


async def _events(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    wait = req.query.get("wait")
    if wait not in (None, "flush"):
        raise HTTPError(400, "bad_wait", "wait takes one value: wait=flush")
    if req.headers.get(b"content-encoding", b"identity").lower() != b"identity":
        # A gzip body read as JSON would be refused with a misleading reason.
        raise HTTPError(415, "bad_encoding", "send the body uncompressed")
    body = await read_body(req, receive, app.max_body)
    return await post_events(app.intake, body, wait == "flush")


async def _track(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    # The parameters in the template's order: account, event, then the period's parts.
    return await api.track(app.stats, req, list(params.values()))


async def _funnels(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await api.funnels(app.stats, req, list(params.values()))


async def _series(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await api.series(app.stats, req)


async def _accounts(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await api.accounts(app.stats, req)


async def _top(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await api.top(app.stats, req)


async def _badge(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    # The badge module reads its target from the raw path (and caches it by that).
    return await badge(app.badges, app.badge_headers, req)


async def _openapi(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return Response(200, app.openapi)


async def _health(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return app.health()


async def _metrics(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    text = app.metrics.render().encode()
    return Response(200, text, b"text/plain; version=0.0.4; charset=utf-8", [NO_STORE])


def _read(
    path: str,
    handler: Handler,
    summary: str,
    schema: str,
    parameters: tuple[dict[str, Any], ...] = (),
    query: list[dict[str, Any]] | None = None,
    other: dict[str, Any] | None = None,
) -> Route:
    """A GET of the read API: JSON answering `schema` (JSONP with callback), shared."""
    operation = doc.read(summary, query or [], schema, other)
    return Route(path, "GET", handler, operation, parameters, share=READ)


def _image(
    path: str, summary: str, media: dict[str, Any], query: list[dict[str, Any]] | None = None
) -> Route:
    """A badge URL: `/badge.svg?repo=` or `/badge/{id}.svg`, whose id may hold `/`."""
    operation = doc.badge(summary, query or [], media)
    ident = "{id}" in path
    return Route(
        path,
        "GET",
        _badge,
        operation,
        (doc.ID,) if ident else (),
        share=BADGE,
        slashes="id" if ident else None,
    )


_T = "/api/stats/track/{account}/{event}"
_F = "/api/stats/funnels/{account}/{event}/{year}"
ACC, EV, Y, M, D, H = doc.ACC, doc.EV, doc.Y, doc.M, doc.D, doc.H

ROUTES: list[Route] = [
    Route("/", "GET", _dashboard, doc.DASHBOARD),
    Route("/dashboard/{asset}", "GET", _asset, doc.ASSET),
    Route("/api/live", "GET", _live, doc.LIVE, share=READ),
    Route("/api/events", "POST", _events, doc.EVENTS, share=INGEST),
    _read("/api/stats/track", _track, "Event types seen", "Events"),
    _read(
        "/api/stats/track/{account}",
        _track,
        "Event types an account has sent",
        "AccountEvents",
        (ACC,),
    ),
    _read(_T, _track, "All time, by year", "Period", (ACC, EV)),
    _read(_T + "/{year}", _track, "A year, by month", "Period", (ACC, EV, Y)),
    _read(_T + "/{year}/{month}", _track, "A month, by day", "Period", (ACC, EV, Y, M)),
    _read(_T + "/{year}/{month}/{day}", _track, "A day, by hour", "Period", (ACC, EV, Y, M, D)),
    _read(
        _T + "/{year}/{month}/{day}/{hour}",
        _track,
        "An hour, by minute",
        "Period",
        (ACC, EV, Y, M, D, H),
    ),
    _read(_F, _funnels, "Breakdown for a year", "Funnel", (ACC, EV, Y)),
    _read(_F + "/{month}", _funnels, "Breakdown for a month", "Funnel", (ACC, EV, Y, M)),
    _read(
        "/api/stats/series",
        _series,
        "Counts per interval across a range",
        "Series",
        query=doc.SERIES_QUERY,
        other=doc.CSV,
    ),
    _read(
        "/api/accounts",
        _accounts,
        "Accounts seen for an event, in name order",
        "Accounts",
        query=doc.ACCOUNTS_QUERY,
    ),
    _read(
        "/api/top",
        _top,
        "Accounts with the most events in a day or month",
        "Top",
        query=doc.TOP_QUERY,
    ),
    _image(
        "/badge.svg",
        "The seed's badge URL: counts a hit for `repo`, shows the total",
        doc.SVG,
        [doc.REPO],
    ),
    _image(
        "/badge.json",
        "The seed's badge URL as shields.io's endpoint JSON; counts only with increment=1",
        doc.ENDPOINT,
        [doc.REPO],
    ),
    _image("/badge/{id}.svg", "A badge: counts a view, shows the chosen figure", doc.SVG),
    _image(
        "/badge/{id}.json",
        "shields.io's endpoint JSON for the figure; counts only with increment=1",
        doc.ENDPOINT,
    ),
    Route("/openapi.json", "GET", _openapi, doc.SELF, share=READ),
    Route("/healthz", "GET", _health, doc.HEALTH),
    Route("/metrics", "GET", _metrics, doc.PROMETHEUS),
    *owner.ROUTES,
]


def miss(req: Request) -> HTTPError:
    """The refusal of a path no route takes: a 404, or where a family of routes has a
    better reason, that one."""
    seg = req.segments
    raw: bytes = req.scope.get("raw_path") or req.scope["path"].encode()
    if badge_space(raw):
        # The badge reader's own refusal (missing_id, not_found), as the fast path
        # gives it: a badge URL is answered alike whichever reader took the request.
        badge_target(raw, req.query_string)
    elif seg[:3] == ["api", "stats", "track"] and len(seg) > 5:
        # Past an hour: the period's own reason (too many period parts).
        try:
            Period.from_strings(seg[5:])
        except ValueError as exc:
            return HTTPError(400, "bad_period", str(exc))
    return HTTPError(404, "not_found", "no such path; see /openapi.json")
