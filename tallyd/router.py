"""Routing by one table: each `Route` is dispatched, answers 405 with its `Allow`,
and is documented in `/openapi.json`, all from the same entry (`tallyd/routes.py`).

A path template is OpenAPI's (`/api/stats/track/{account}/{event}/{year}`): each
`{name}` matches one decoded path segment (so `owner%2Fname` is one value), and
may carry a literal prefix or suffix within its segment (`{id}.svg`). The last
parameter may be named in `Route.slashes` to match one or more segments joined by
`/` (a badge id `owner/name`). Literal segments are matched before parameters:
`/api/stats/series` wins over `/api/stats/{kind}`, whatever the table's order.

Routes with the same template are one path: one entry per method, and a request
with any other method is answered 405 with `Allow` listing the path's methods
(HEAD wherever GET is, as the server answers HEAD with GET's headers). A path with
a CORS policy (`share`) also answers an OPTIONS preflight and documents it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tallyd.openapi import preflight
from tallyd.web import HTTPError, Receive, Request, Response, Streamed

if TYPE_CHECKING:
    from tallyd.app import App

Params = dict[str, str]
Answer = Response | Streamed
Handler = Callable[["App", Request, Receive, Params], Awaitable[Answer]]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAM = re.compile(r"([^{}]*)\{([A-Za-z_][A-Za-z0-9_]*)\}([^{}]*)")


@dataclass(frozen=True)
class Route:
    """One method on one path: how it is answered and how it is documented.

    `operation` is the OpenAPI operation object (summary, query parameters,
    responses); `parameters` are the path's parameters, one per `{name}` of the
    template (routes on the same template give the same ones, or none). `share` is
    the CORS policy of the path's answers (web.BADGE, READ, INGEST; None: no CORS).
    """

    path: str
    method: str
    handler: Handler
    operation: dict[str, Any]
    parameters: tuple[dict[str, Any], ...] = ()
    share: str | None = None
    slashes: str | None = None


@dataclass(frozen=True)
class _Param:
    name: str
    prefix: str
    suffix: str


_Part = str | _Param


@dataclass
class Path:
    """The routes of one template, and what follows from them."""

    template: str
    parts: tuple[_Part, ...]
    slashes: bool
    parameters: tuple[dict[str, Any], ...]
    routes: dict[str, Route] = field(default_factory=dict)
    share: str | None = None

    @property
    def methods(self) -> list[str]:
        """Every method answered, in the table's order, HEAD after GET."""
        out: list[str] = []
        for method in self.routes:
            out += ["GET", "HEAD"] if method == "GET" else [method]
        return out

    @property
    def allow(self) -> bytes:
        return ", ".join(self.methods).encode()

    @property
    def shared(self) -> bytes:
        """What a CORS preflight allows: the methods of the shared routes, and OPTIONS."""
        methods: list[str] = []
        for method, route in self.routes.items():
            if route.share is not None:
                methods += ["GET", "HEAD"] if method == "GET" else [method]
        return ", ".join([*methods, "OPTIONS"]).encode()

    def route(self, method: str) -> Route:
        """The route answering `method`, or a 405 naming the ones that would."""
        found = self.routes.get("GET" if method == "HEAD" else method)
        if found is None:
            methods = self.methods
            raise HTTPError(
                405,
                "method_not_allowed",
                f"use {' or '.join(methods)}",
                [(b"allow", ", ".join(methods).encode())],
            )
        return found

    def match(self, segments: list[str]) -> Params | None:
        parts = self.parts
        n = len(parts)
        if len(segments) != n and not (self.slashes and len(segments) > n):
            return None
        params: Params = {}
        for i, part in enumerate(parts):
            last = i == n - 1
            value = "/".join(segments[i:]) if last and self.slashes else segments[i]
            if isinstance(part, str):
                if value != part:
                    return None
                continue
            if part.prefix or part.suffix:
                inner = len(value) - len(part.prefix) - len(part.suffix)
                if inner < 1 or not value.startswith(part.prefix):
                    return None
                if not value.endswith(part.suffix):
                    return None
                value = value[len(part.prefix) : len(value) - len(part.suffix)]
            params[part.name] = value
        return params

    def document(self) -> dict[str, Any]:
        """This path's item in the OpenAPI document."""
        item: dict[str, Any] = {m.lower(): r.operation for m, r in self.routes.items()}
        if self.share is not None:
            names = [part.name for part in self.parts if isinstance(part, _Param)]
            item["options"] = preflight(self.share, self.shared, names)
        if self.parameters:
            item["parameters"] = list(self.parameters)
        return item


@dataclass(frozen=True)
class Match:
    path: Path
    params: Params


class Router:
    """The paths of a route table, matched by segments (`web.Request.segments`)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.paths: dict[str, Path] = {}
        for route in routes:
            self._add(route)
        # Candidates by first segment, literal parts first (see the module's note).
        self._by_head: dict[str, list[Path]] = {}
        for path in self.paths.values():
            head = path.parts[0] if path.parts else ""
            if not isinstance(head, str):
                raise ValueError(f"{path.template}: the first segment must be literal")
            self._by_head.setdefault(head, []).append(path)
        for paths in self._by_head.values():
            paths.sort(key=lambda p: -sum(isinstance(part, str) for part in p.parts))

    def _add(self, route: Route) -> None:
        if route.method not in METHODS:
            raise ValueError(f"{route.path}: {route.method} is not a method a route takes")
        path = self.paths.get(route.path)
        if path is None:
            parts, names = _compile(route.path)
            given = (*route.parameters, *route.operation.get("parameters", ()))
            declared = [p["name"] for p in given if p["in"] == "path"]
            if declared != names:
                raise ValueError(f"{route.path}: path parameters {declared} != {names}")
            if route.slashes is not None and (not names or route.slashes != names[-1]):
                raise ValueError(f"{route.path}: only the last parameter may hold slashes")
            path = Path(route.path, parts, route.slashes is not None, route.parameters)
            self.paths[route.path] = path
        elif route.parameters and route.parameters != path.parameters:
            raise ValueError(f"{route.path}: routes of one path give the same parameters")
        if route.method in path.routes:
            raise ValueError(f"{route.path}: {route.method} is routed twice")
        if route.share is not None:
            if path.share not in (None, route.share):
                raise ValueError(f"{route.path}: one CORS policy a path")
            path.share = route.share
        path.routes[route.method] = route

    def find(self, segments: list[str]) -> Match | None:
        """The path these segments name, with its parameters; None: no such path."""
        for path in self._by_head.get(segments[0] if segments else "", ()):
            params = path.match(segments)
            if params is not None:
                return Match(path, params)
        return None

    def document(self) -> dict[str, Any]:
        """The OpenAPI `paths`, in the table's order."""
        return {template: path.document() for template, path in self.paths.items()}


def _compile(template: str) -> tuple[tuple[_Part, ...], list[str]]:
    if not template.startswith("/"):
        raise ValueError(f"{template}: a path starts with /")
    pieces = template.split("/")[1:]
    if pieces == [""]:
        return (), []
    parts: list[_Part] = []
    names: list[str] = []
    for piece in pieces:
        if "{" not in piece and "}" not in piece:
            parts.append(piece)
            continue
        found = PARAM.fullmatch(piece)
        if found is None:
            raise ValueError(f"{template}: one {{name}} a segment")
        prefix, name, suffix = found.groups()
        parts.append(_Param(name, prefix, suffix))
        names.append(name)
    return tuple(parts), names
