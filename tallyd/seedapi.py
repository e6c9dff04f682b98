"""The first seed's own HTTP API (`--seed-api /stats`), for the Go aggregator's clients.

The Bootic aggregator's README shows `/api/stats/...` answers with numbers and
zero-filled segments (tallyd's default API, tallyd.api). Its code
(github.com/bootic/bootic_stats_aggregates, handlers/handlers.go) answered
something else, under its `--pathprefix` (default `/stats`): the URL's parts as
strings, links to the keys below, and the Redis hash as it was, sparse and with
unpadded fields:

    {"type": "track", "account": "acme", "event": "pageview", "year": "2013",
     "month": "9", "day": "", "links": ["http://host/stats/track/acme/pageview/2013/9/5"],
     "data": {"5": 3}}

Counts come from the same reads as the default API (tallyd.stats), unflushed
ones included. docs/seed-api.md says where this differs from the Go code, and why.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import orjson

from tallyd import openapi as doc
from tallyd.app import ROUTER, App
from tallyd.periods import Period
from tallyd.router import Answer, Handler, Params, Route, Router
from tallyd.routes import ROUTES
from tallyd.stats import Stats
from tallyd.web import JSON, READ, Headers, HTTPError, Receive, Request, Response

# Each kind of the Go routes, and what it counts (for the OpenAPI summaries).
KINDS = {"track": "counts", "funnels": "breakdown counts"}
# The Go handler's cache headers, word for word (`respond` in handlers.go).
GO_HEADERS: Headers = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, private, proxy-revalidate"),
    (b"pragma", b"no-cache"),
    (b"expires", b"Fri, 24 Nov 2000 01:00:00 GMT"),
]
# Go's encoding/json writes these as escapes inside strings (safe to inline in HTML
# and in a JSONP script); orjson writes them as they are. Each can only stand
# inside a string of the JSON text, so replacing the bytes is exact.
_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")


def check_prefix(prefix: str) -> str:
    """`--seed-api PREFIX`: a path like `/stats` outside tallyd's own paths; a
    ValueError naming the flag otherwise."""
    if not PREFIX.fullmatch(prefix) or any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(
            f"--seed-api {prefix!r}: expected a path like /stats "
            "(segments of letters, digits, . _ ~ -; no trailing /)"
        )
    head = prefix.split("/")[1]
    # A first segment of tallyd's own would mix the two APIs under one path.
    if any(route.path.split("/")[1] == head for route in ROUTES):
        raise ValueError(f"--seed-api {prefix!r}: /{head} is a path of tallyd's own")
    return prefix


def router_for(prefix: str) -> Router:
    """The app's route table: tallyd's own, and the Go routes under `prefix` if set."""
    if not prefix:
        return ROUTER
    return Router([*ROUTES, *SeedApi(prefix).routes()])


def go_json(payload: dict[str, object]) -> Response:
    """An answer as the Go handler wrote it: its JSON, its content type, its headers.

    A `callback` makes it JSONP in the app, as every JSON answer of tallyd's."""
    body = orjson.dumps(payload)
    for raw, escaped in _GO_ESCAPES:
        if raw in body:
            body = body.replace(raw, escaped)
    return Response(200, body, JSON, list(GO_HEADERS))


def payload(
    kind: str = "",
    account: str = "",
    event: str = "",
    when: tuple[str, ...] = (),
    links: list[str] | None = None,
    data: dict[str, int] | None = None,
) -> dict[str, object]:
    """The Go `Payload` struct, its fields in its order: every one a string but
    `links` (a list, never null) and `data` (null where the handler read no hash)."""
    year, month, day = (*when, "", "", "")[:3]
    return {
        "type": kind,
        "account": account,
        "event": event,
        "year": year,
        "month": month,
        "day": day,
        "links": links or [],
        "data": data,
    }


class SeedApi:
    """The Go routes under one prefix: `routes()` for the app's route table."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def routes(self) -> list[Route]:
        """The root, and a year, month and day for each kind, as Go's router had them."""
        op = doc.read
        root = op("Links to track and funnels", [], "Seed")
        out = [Route(self.prefix, "GET", self._root, root, share=READ)]
        for kind in KINDS:
            handler = self._handler(kind)
            path = f"{self.prefix}/{kind}/{{account}}/{{event}}/{{year}}"
            for below, summary, params in (
                ("", "by month", (doc.ACC, doc.EV, doc.Y)),
                ("/{month}", "by day", (doc.ACC, doc.EV, doc.Y, doc.M)),
                ("/{day}", "by hour", (doc.ACC, doc.EV, doc.Y, doc.M, doc.D)),
            ):
                path += below
                what = f"The Go aggregator's {KINDS[kind]} {summary}, sparse"
                out.append(Route(path, "GET", handler, op(what, [], "Seed"), params, share=READ))
        return out

    async def _root(self, app: App, req: Request, receive: Receive, params: Params) -> Answer:
        """`PREFIX`: links to the two kinds (Go's RootHandler)."""
        base = self._base(req)
        return go_json(payload(links=[f"{base}/track", f"{base}/funnels"]))

    def _handler(self, kind: str) -> Handler:
        async def handle(app: App, req: Request, receive: Receive, params: Params) -> Answer:
            when = tuple(params[p] for p in ("year", "month", "day") if p in params)
            return await self.period(app.stats, req, kind, params["account"], params["event"], when)

        return handle

    async def period(
        self,
        stats: Stats,
        req: Request,
        kind: str,
        account: str,
        event: str,
        when: tuple[str, ...],
    ) -> Response:
        """`PREFIX/{track|funnels}/{account}/{event}/{year}[/{month}[/{day}]]` (Go's
        KeyHandler): the period's hash, sparse, and links to the periods below it
        that hold counts. A period with none answers 200 with `"data": {}`."""
        period = _period(when)
        if kind == "track":
            data, below = await _track(stats, account, event, period)
        else:
            data, below = await _funnels(stats, account, event, period)
        here = f"{self._base(req)}/{kind}/{quote(account, safe='')}/{quote(event, safe='')}"
        links = [here + "".join(f"/{n}" for n in parts) for parts in below]
        # Go's encoding/json writes a map's keys sorted as strings ("1", "10", "2").
        ordered = {k: data[k] for k in sorted(data)}
        return go_json(payload(kind, account, event, when, links, ordered))

    def _base(self, req: Request) -> str:
        # As Go built its links: http, the Host the client asked for, the prefix.
        host = req.headers.get(b"host")
        if host is None:
            server = req.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}".encode()
        return f"http://{host.decode('latin-1')}{self.prefix}"


async def _track(
    stats: Stats, account: str, event: str, period: Period
) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """A period's counts by segment, and the periods below it with counts: for a
    year its months and their days (what Go's `KEYS track:...:2013:*` found), for
    a month its days, for a day none (its hours were fields, not keys)."""
    counts = await stats.segment_counts(account, event, period)
    data = {str(s): counts[s] for s in _held(counts)}
    year, month = period.year, period.month
    assert year is not None
    if period.day is not None:
        return data, []
    if month is not None:
        return data, [(year, month, d) for d in _held(counts)]
    months = _held(counts)
    days = await asyncio.gather(
        *(stats.segment_counts(account, event, Period(year, m)) for m in months)
    )
    below: list[tuple[int, ...]] = []
    for m, of_month in zip(months, days, strict=True):
        below += [(year, m), *((year, m, d) for d in _held(of_month))]
    return data, below


async def _funnels(
    stats: Stats, account: str, event: str, period: Period
) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """Breakdown counts of a year or a month, and for a year the months that have
    some. Funnels were never kept by day: a day is always empty, as in Go."""
    year = period.year
    assert year is not None
    if period.day is not None:
        return {}, []
    found: dict[str, int] = (await stats.funnel(account, event, period))["data"]
    data = {value: n for value, n in found.items() if n}
    if period.month is not None:
        return data, []
    # Only months with events of this kind can hold a breakdown: read those.
    months = _held(await stats.segment_counts(account, event, period))
    funnels = await asyncio.gather(*(stats.funnel(account, event, Period(year, m)) for m in months))
    below: list[tuple[int, ...]] = [
        (year, m) for m, f in zip(months, funnels, strict=True) if any(f["data"].values())
    ]
    return data, below


def _held(counts: dict[int, int]) -> list[int]:
    """The segments a Redis hash of Go's would have had as fields: those counted
    (a field was only ever made by an increment), in order."""
    return sorted(s for s, n in counts.items() if n)


def _period(when: tuple[str, ...]) -> Period:
    try:
        return Period.from_strings(list(when))
    except ValueError as exc:
        raise HTTPError(400, "bad_period", str(exc)) from None
