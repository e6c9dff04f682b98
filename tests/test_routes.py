"""The route table is what the server answers: every documented path and method is
routed (never a 404 or 405), every other method is a 405 whose `Allow` is the table's,
and `/openapi.json` documents exactly the table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tallyd.app import OPENAPI, ROUTER
from tallyd.router import Route, Router
from tallyd.web import READ, Response
from tests.conftest import Server

pytestmark = pytest.mark.timeout(120)

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# A value each parameter accepts (`id` with a slash, as badge ids have); else "acme".
SAMPLES = {
    "event": "pageview",
    "year": "2013",
    "month": "09",
    "day": "05",
    "hour": "14",
    "id": "acme/site",
    "asset": "app.js",
    "from": "2013-09-05",
    "repo": "acme/site",
}
EVENT = {"event": "pageview", "account": "acme"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("routes")).start()
    yield server
    server.stop()


def _url(template: str, item: dict[str, Any], method: str) -> tuple[str, dict[str, str]]:
    """A request the operation documents: its path filled in, its required query given."""
    path = template
    for p in item.get("parameters", []):
        path = path.replace("{" + p["name"] + "}", SAMPLES.get(p["name"], "acme"))
    query: dict[str, str] = {}
    for p in item.get(method, {}).get("parameters", []):
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", SAMPLES.get(p["name"], "acme"))
        elif p.get("required"):
            query[p["name"]] = SAMPLES.get(p["name"], "acme")
    return path, query


def _send(served: Server, method: str, path: str, query: dict[str, str]) -> httpx.Response:
    body = EVENT if method == "POST" else None
    # The live stream never ends: its head is enough.
    with served.client.stream(method, path, params=query, json=body) as r:
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            r.read()
        return r


def test_the_document_is_the_route_table(served: Server) -> None:
    assert served.get("/openapi.json").content == OPENAPI
    paths = served.get("/openapi.json").json()["paths"]
    assert list(paths) == list(ROUTER.paths)
    for template, path in ROUTER.paths.items():
        documented = {m.upper() for m in paths[template] if m != "parameters"}
        options = {"OPTIONS"} if path.share is not None else set()
        assert documented == {*path.routes, *options}, template


def test_every_documented_method_is_answered(served: Server) -> None:
    paths = served.get("/openapi.json").json()["paths"]
    for template, item in paths.items():
        for method in (m.upper() for m in item if m != "parameters"):
            path, query = _url(template, item, method.lower())
            for asked in ("GET", "HEAD") if method == "GET" else (method,):
                r = _send(served, asked, path, query)
                assert r.status_code not in (404, 405), (asked, path, r.status_code)
                assert r.status_code < 500, (asked, path, r.status_code)
                if asked == "OPTIONS":
                    assert r.status_code == 204
                    assert r.headers["allow"] == ROUTER.paths[template].shared.decode()


def test_every_other_method_is_405_with_the_tables_allow(served: Server) -> None:
    paths = served.get("/openapi.json").json()["paths"]
    for template, item in paths.items():
        table = ROUTER.paths[template]
        answered = set(table.methods) | ({"OPTIONS"} if table.share is not None else set())
        path, query = _url(template, item, next(m for m in item if m != "parameters"))
        for method in sorted(set(ALL_METHODS) - answered):
            r = _send(served, method, path, query)
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"] == table.allow.decode() == ", ".join(table.methods)
            if method != "HEAD":  # a HEAD answer has GET's headers and no body
                assert r.json()["error"] == "method_not_allowed"


async def _ok(app: Any, req: Any, receive: Any, params: dict[str, str]) -> Response:
    return Response(200, b"")


def _op(summary: str) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": {"description": "ok"}}}


ACCOUNT = {"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}


def test_routes_of_one_path_share_its_allow_and_document() -> None:
    router = Router(
        [
            Route("/x/{account}", "GET", _ok, _op("read"), (ACCOUNT,), share=READ),
            Route("/x/{account}", "DELETE", _ok, _op("delete")),
        ]
    )
    path = router.paths["/x/{account}"]
    assert path.allow == b"GET, HEAD, DELETE"
    # A preflight allows what is shared with other origins only.
    assert path.shared == b"GET, HEAD, OPTIONS"
    assert list(router.document()["/x/{account}"]) == ["get", "delete", "options", "parameters"]
    found = router.find(["x", "owner/name"])
    assert found is not None and found.params == {"account": "owner/name"}
    assert router.find(["x"]) is None and router.find(["x", "a", "b"]) is None


def test_literal_segments_win_over_parameters() -> None:
    router = Router(
        [
            Route("/s/{kind}", "GET", _ok, _op("any"), (dict(ACCOUNT, name="kind"),)),
            Route("/s/series", "GET", _ok, _op("series")),
        ]
    )
    found = router.find(["s", "series"])
    assert found is not None and found.path.template == "/s/series"


def test_a_parameter_may_span_segments_only_when_named() -> None:
    ident = dict(ACCOUNT, name="id")
    router = Router([Route("/b/{id}.svg", "GET", _ok, _op("badge"), (ident,), slashes="id")])
    found = router.find(["b", "owner", "name.svg"])
    assert found is not None and found.params == {"id": "owner/name"}
    assert router.find(["b", ".svg"]) is None and router.find(["b", "x.png"]) is None


@pytest.mark.parametrize(
    "route",
    [
        Route("/x/{account}", "GET", _ok, _op("undocumented parameter")),
        Route("/x", "GET", _ok, _op("documented but absent"), (ACCOUNT,)),
        Route("/x", "BREW", _ok, _op("no such method")),
        Route("/{account}", "GET", _ok, _op("first segment not literal"), (ACCOUNT,)),
    ],
)
def test_a_route_must_be_documented_as_it_is_matched(route: Route) -> None:
    with pytest.raises(ValueError):
        Router([route])


def test_a_method_is_routed_once() -> None:
    with pytest.raises(ValueError):
        Router([Route("/x", "GET", _ok, _op("a")), Route("/x", "GET", _ok, _op("b"))])
