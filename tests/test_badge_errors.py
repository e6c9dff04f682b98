"""Every badge URL answers a badge: bad input, unknown paths, overload and store outages."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tallyd.badges.metrics import NAMED
from tests.conftest import RedisServer, Server, require, wait_until

pytestmark = pytest.mark.timeout(120)

SVG_NS = "{http://www.w3.org/2000/svg}"
RED, GREY = NAMED["red"], NAMED["lightgrey"]
assert (RED, GREY) == ("#e05d44", "#9f9f9f")

# shields.io's rules for an endpoint document (services/endpoint-common.js), as
# tallyd answers it: these keys and no others, each of this type.
ENDPOINT_SCHEMA: dict[str, type] = {
    "schemaVersion": int,
    "label": str,
    "message": str,
    "color": str,
    "labelColor": str,
    "isError": bool,
    "cacheSeconds": int,
}


def endpoint(r: httpx.Response) -> dict[str, Any]:
    """The endpoint document of an answer, checked against the schema above."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    assert set(doc) == set(ENDPOINT_SCHEMA), doc
    for key, kind in ENDPOINT_SCHEMA.items():
        # bool is an int in Python; neither may stand for the other here.
        assert type(doc[key]) is kind, (key, doc)
    assert doc["schemaVersion"] == 1
    assert doc["message"] != ""
    assert doc["cacheSeconds"] >= 300  # shields' floor for an endpoint
    return doc


def badge(r: httpx.Response) -> ET.Element:
    """The SVG of an answer, with the headers every badge has."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert r.headers["cache-control"] == "max-age=0, no-cache, no-store, must-revalidate"
    assert parsedate_to_datetime(r.headers["expires"]) < datetime.now(UTC)
    root = ET.fromstring(r.text)
    assert root.tag == SVG_NS + "svg" and root.get("role") == "img"
    title = root.find(SVG_NS + "title")
    assert title is not None and title.text == root.get("aria-label")
    return root


def error_badge(r: httpx.Response, error: str, color: str) -> str:
    """The text of an error badge (`label: message`), its reason and colour checked."""
    root = badge(r)
    assert r.headers["x-tallyd-error"] == error
    fills = [rect.get("fill") for rect in root.iter(SVG_NS + "rect")]
    assert color in fills, fills
    return root.get("aria-label", "")


# Refusals of each parameter, the same on every badge route.
PARAMETERS = [
    ({"style": "round"}, "bad_style", "invalid style"),
    ({"color": "javascript:x"}, "bad_color", "invalid color"),
    ({"label_color": "nope"}, "bad_label_color", "invalid label_color"),
    ({"labelColor": "nope"}, "bad_labelColor", "invalid labelColor"),
    ({"metric": "weekly"}, "bad_metric", "invalid metric"),
    ({"format": "roman"}, "bad_format", "invalid format"),
    ({"base": "-5"}, "bad_base", "invalid base"),
    ({"increment": "yes"}, "bad_increment", "invalid increment"),
    ({"label": "x" * 101}, "bad_label", "invalid label"),
    ({"event": "\x01"}, "bad_event", "invalid event"),
]
ROUTES = [("/badge.svg", {"repo": "a"}), ("/badge/a.svg", {}), ("/badge/a.json", {})]
# Refusals of the path or the id, per route.
PATHS = [
    ("/badge.svg", {}, "missing_repo", "missing repo"),
    ("/badge.svg", {"repo": ""}, "bad_repo", "invalid repo"),
    ("/badge.svg", {"repo": "a\x7fb"}, "bad_repo", "invalid repo"),
    ("/badge/" + "a" * 201 + ".svg", {}, "bad_id", "invalid id"),
    ("/badge/" + "a" * 201 + ".json", {}, "bad_id", "invalid id"),
    ("/badge/a%01b.svg", {}, "bad_id", "invalid id"),
    ("/badge/a%01b.json", {}, "bad_id", "invalid id"),
    ("/badge/a%zzb.svg", {}, "bad_path", "invalid path"),
    ("/badge/a%zzb.json", {}, "bad_path", "invalid path"),
    ("/badge/a.png", {}, "not_found", "unknown badge"),
    ("/badge/.svg", {}, "not_found", "unknown badge"),
    ("/badge/a", {}, "not_found", "unknown badge"),
]
CASES = [
    (path, {**base, **params}, error, message)
    for path, base in ROUTES
    for params, error, message in PARAMETERS
] + PATHS


def get(server: Server, path: str, params: dict[str, str]) -> httpx.Response:
    # Built by hand: httpx would normalise a malformed escape such as %zz.
    query = str(httpx.QueryParams(params))
    return server.client.get(path + ("?" + query if query else ""))


def check_error(r: httpx.Response, path: str, error: str, message: str, color: str) -> None:
    if path.endswith(".json"):
        assert r.headers["x-tallyd-error"] == error
        doc = endpoint(r)
        assert doc["isError"] is True and doc["message"] == message
        assert doc["color"] == ("red" if color == RED else "lightgrey")
    else:
        assert error_badge(r, error, color) == f"hits: {message}"


def total(server: Server, account: str) -> int:
    r = server.get(f"/api/stats/track/{account.replace('/', '%2F')}/hit")
    return int(r.json()["total"])


@pytest.mark.parametrize(("path", "params", "error", "message"), CASES)
def test_every_refusal_is_a_red_badge(
    server: Server, path: str, params: dict[str, str], error: str, message: str
) -> None:
    check_error(get(server, path, params), path, error, message, RED)
    # HEAD answers the same, without the body.
    head = server.client.head(path, params=params) if "%zz" not in path else None
    if head is not None:
        assert head.status_code == 200 and head.content == b""
        assert head.headers["x-tallyd-error"] == error
    assert total(server, "a") == 0


def test_a_query_that_is_not_utf8_is_a_badge(server: Server) -> None:
    for path in ("/badge/a.svg", "/badge/a.json", "/badge.svg"):
        check_error(server.client.get(path + "?label=%FF"), path, "bad_query", "invalid query", RED)


def test_an_error_badge_keeps_the_label_and_style_that_are_valid(server: Server) -> None:
    r = server.get("/badge/a.svg", label="views", style="round")
    assert error_badge(r, "bad_style", RED) == "views: invalid style"
    r = server.get("/badge/a.svg", label="views", style="for-the-badge", metric="weekly")
    assert error_badge(r, "bad_metric", RED) == "VIEWS: INVALID METRIC"
    assert badge(r).get("height") == "28"
    doc = endpoint(server.get("/badge/a.json", label="views", metric="weekly"))
    assert (doc["label"], doc["message"], doc["isError"]) == ("views", "invalid metric", True)


def test_error_badge_texts_are_escaped(server: Server) -> None:
    label = "<script>alert(\"x\")</script> & 'quotes' 🎉"
    r = server.get("/badge/a.svg", label=label, style="round")
    assert error_badge(r, "bad_style", RED) == f"{label}: invalid style"
    assert "<script>" not in r.text
    assert endpoint(server.get("/badge/a.json", label=label, style="x"))["label"] == label


def test_the_endpoint_shows_the_label_the_svg_shows(server: Server) -> None:
    # Characters XML cannot carry are dropped from the image; the JSON drops them too.
    for raw, shown in (("a\x01b\x08", "ab"), ("\x00", ""), ("  hits  ", "hits")):
        svg = server.get("/badge/a.svg", label=raw, increment="0")
        aria = ET.fromstring(svg.text).get("aria-label", "")
        assert aria.startswith(f"{shown}: ") if shown else ":" not in aria, aria
        doc = endpoint(server.get("/badge/a.json", label=raw))
        assert doc["label"] == shown and doc["message"]


def test_refusals_are_counted_by_reason(server: Server) -> None:
    for _ in range(3):
        server.get("/badge/a.svg", style="round")
    server.get("/badge/a.json", metric="x")
    server.get("/badge.svg")
    metrics = server.get("/metrics").text
    assert 'tallyd_http_errors_total{status="400",error="bad_style"} 3' in metrics
    assert 'tallyd_http_errors_total{status="400",error="bad_metric"} 1' in metrics
    assert 'tallyd_http_errors_total{status="400",error="missing_repo"} 1' in metrics
    # One log line for the burst (at most one a second), naming the request.
    log = server.log.read_text()
    assert log.count("refused HTTP 400: bad_style") == 1 and "(GET /badge/a.svg)" in log


def test_other_methods_are_still_405(server: Server) -> None:
    r = server.client.post("/badge/a.svg")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.json()["error"] == "method_not_allowed"


def test_the_endpoint_counts_only_when_asked(server: Server) -> None:
    assert endpoint(server.get("/badge/e.json"))["message"] == "0"
    assert endpoint(server.get("/badge/e.json"))["message"] == "0"
    doc = endpoint(server.get("/badge/e.json", increment="1", label="views", color="blue"))
    assert doc == {
        "schemaVersion": 1,
        "label": "views",
        "message": "1",
        "color": "blue",
        "labelColor": "grey",
        "isError": False,
        "cacheSeconds": 300,
    }
    doc = endpoint(server.get("/badge/e.json", label_color="ff69b4", style="for-the-badge"))
    assert (doc["message"], doc["labelColor"]) == ("1", "#ff69b4")
    assert total(server, "e") == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A redis-server of this test's own, which it stops and starts."""
    redis = RedisServer(require("redis-server"), tmp_path / "redis").start()
    yield redis
    redis.stop()


def test_a_store_outage_shows_the_last_figure(
    own_redis: RedisServer, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--badge-refresh", "0.3", store=own_redis.url).start()
    for _ in range(3):
        badge(server.get("/badge/known.svg"))
    assert badge(server.get("/badge/known.svg", metric="today")).get("aria-label") == "hits: 4"
    assert endpoint(server.get("/badge/known.json"))["message"] == "4"
    assert server.post([{"event": "hit", "account": "stored"}]).status_code == 202
    assert wait_until(lambda: total(server, "known"), 4) == 4
    assert wait_until(lambda: total(server, "stored"), 1) == 1
    own_redis.stop()
    # The figures drawn before stay, kept up to date by the views, past their refresh.
    for want in (5, 6):
        time.sleep(0.4)
        r = server.get("/badge/known.svg")
        assert badge(r).get("aria-label") == f"hits: {want}" and "x-tallyd-error" not in r.headers
    r = server.get("/badge/known.svg", metric="today", increment="0")
    assert badge(r).get("aria-label") == "hits: 6"
    doc = endpoint(server.get("/badge/known.json"))
    assert (doc["message"], doc["isError"]) == ("6", False)
    # A figure never read, of an id the store holds, has nothing to show: a grey
    # badge saying why.
    for path in ("/badge/stored.svg", "/badge/stored.json", "/badge.svg?repo=stored"):
        check_error(server.client.get(path), path, "store_unavailable", "unavailable", GREY)
    # An id the store has never held starts at 0 without it (tallyd.seen).
    r = server.get("/badge/fresh.svg")
    assert badge(r).get("aria-label") == "hits: 1" and "x-tallyd-error" not in r.headers
    r = server.get("/badge/known.svg", metric="year")
    assert error_badge(r, "store_unavailable", GREY) == "hits: unavailable"
    metrics = server.get("/metrics").text
    assert 'tallyd_http_errors_total{status="503",error="store_unavailable"} 4' in metrics
    # Views taken during the outage are written once the store is back.
    own_redis.start()
    assert wait_until(lambda: _total_or_zero(server, "known"), 7) == 7
    assert wait_until(lambda: _total_or_zero(server, "stored"), 3) == 3
    assert wait_until(lambda: _total_or_zero(server, "fresh"), 1) == 1


def _total_or_zero(server: Server, account: str) -> int:
    r = server.get(f"/api/stats/track/{account}/hit")
    return int(r.json()["total"]) if r.status_code == 200 else 0


def test_overload_is_a_grey_badge(
    own_redis: RedisServer, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--max-pending-cells", "5", store=own_redis.url).start()
    own_redis.stop()
    errors = []
    for i in range(20):
        r = server.get(f"/badge/id{i}.svg")
        if r.headers.get("x-tallyd-error") == "overloaded":
            errors.append(error_badge(r, "overloaded", GREY))
            check_error(
                server.get(f"/badge/id{i}.json", increment="1"),
                ".json",
                "overloaded",
                "overloaded",
                GREY,
            )
            break
    assert errors == ["hits: overloaded"]
    assert 'error="overloaded"' in server.get("/metrics").text


def test_the_openapi_document_describes_the_endpoint_as_served(server: Server) -> None:
    schema = server.get("/openapi.json").json()["components"]["schemas"]["Endpoint"]
    assert set(schema["required"]) == set(ENDPOINT_SCHEMA)
    # Optional, only when a logo is asked for (shields' own keys for one).
    assert set(schema["properties"]) == {*ENDPOINT_SCHEMA, "namedLogo", "logoColor", "logoSvg"}
    assert schema["additionalProperties"] is False
    paths = server.get("/openapi.json").json()["paths"]
    for path in ("/badge.svg", "/badge/{id}.svg", "/badge/{id}.json"):
        assert "X-Tallyd-Error" in paths[path]["get"]["responses"]["200"]["headers"]


def test_badge_paths_without_an_id_are_badges_too(server: Server) -> None:
    for path in ("/badge", "/badge/"):
        assert error_badge(server.get(path), "missing_id", RED).endswith("missing id")
    # The seed's URL answers the endpoint JSON as well, without counting.
    doc = endpoint(server.get("/badge.json", repo="seed/repo"))
    assert doc["message"] == "0" and doc["isError"] is False
    assert endpoint(server.get("/badge.json"))["isError"] is True


def test_an_id_with_an_empty_part_is_refused(server: Server) -> None:
    for path, params, what in (
        ("/badge//x.svg", {}, "id"),
        ("/badge/owner//name.svg", {}, "id"),
        ("/badge.svg", {"repo": "owner/"}, "repo"),
        ("/badge.svg", {"repo": "/x"}, "repo"),
    ):
        r = server.get(path, **params)
        assert error_badge(r, f"bad_{what}", RED).endswith(f"invalid {what}")
    assert server.get("/api/accounts", event="hit").json()["accounts"] == []
