"""`--seed-api /stats`: the Go aggregator's routes and answers, on a real server.

Every expected answer below is written out from the Go code's `Payload`
(bootic/bootic_stats_aggregates, handlers/handlers.go): its fields in its order,
the URL's parts as strings (`""` when absent), `links` to the keys below the
period (never null), `data` the hash as it was (sparse, unpadded fields, keys
sorted as Go's encoding/json sorts them), a missing key `{}` with status 200.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tallyd.config import Config
from tests.conftest import Server

pytestmark = pytest.mark.timeout(120)

# Replaying 2013 down to its hours needs hour hashes kept forever; a long flush
# interval keeps the last events unflushed, so the answers must add them as the
# default API does.
FLAGS = ("--retention-hours", "0", "--retention-minutes", "0", "--flush-interval", "60")

STORED = [
    # acme's pageviews in January and two hours of September 5th, beta's one; orders.
    ("pageview", "acme", "2013-01-31T23:59:00Z", None),
    ("pageview", "acme", "2013-09-05T00:10:00Z", None),
    ("pageview", "acme", "2013-09-05T14:03:07Z", None),
    ("pageview", "beta", "2013-09-05T14:30:00Z", None),
    ("order", "acme", "2013-09-06T10:00:00Z", "paid"),
    ("order", "acme", "2013-10-01T12:00:00Z", "pending"),
    ("order", "acme", "2013-01-02T12:00:00Z", None),
]
UNFLUSHED = [
    ("pageview", "acme", "2013-09-05T14:59:00Z", None),
    ("pageview", "acme", "2013-09-10T09:00:00Z", None),
    ("pageview", "acme", "2013-10-01T12:00:00Z", None),
    ("order", "acme", "2013-09-30T23:00:00Z", "paid"),
]


def _event(event: str, account: str, time: str, status: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event, "account": account, "time": time}
    if status is not None:
        out["status"] = status
    return out


@pytest.fixture(params=["sqlite", "redis"])
def seeded(request: pytest.FixtureRequest, server_factory: type[Server], tmp_path: Path) -> Server:
    """A server with `--seed-api /stats` on each store, STORED in the store and
    UNFLUSHED not yet written."""
    store = None if request.param == "sqlite" else request.getfixturevalue("redis_url")
    server = server_factory(tmp_path, *FLAGS, "--seed-api", "/stats", store=store).start()
    r = server.post([_event(*e) for e in STORED], wait="flush")
    assert r.status_code == 202 and r.json().get("stored") is not False, r.text
    r = server.post([_event(*e) for e in UNFLUSHED])
    assert r.status_code == 202 and r.json()["accepted"] == len(UNFLUSHED), r.text
    return server


def _go(server: Server, path: str) -> dict[str, Any]:
    """The answer to a GET of `path`, checked for the Go handler's status and headers."""
    r = server.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == (
        "no-store, no-cache, must-revalidate, private, proxy-revalidate"
    )
    assert r.headers["pragma"] == "no-cache"
    assert r.headers["expires"] == "Fri, 24 Nov 2000 01:00:00 GMT"
    # Go sent no CORS headers; these are the read API's, which Go's clients ignore.
    assert r.headers["access-control-allow-origin"] == "*"
    answer: dict[str, Any] = r.json()
    return answer


def _same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Field by field, names and order too, as Go's struct wrote them."""
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name] == value, name
        assert type(got[name]) is type(value), name
    # Go's encoding/json writes a map's keys sorted as strings.
    if isinstance(want["data"], dict):
        assert list(got["data"]) == list(want["data"])


def test_year_month_and_day_answer_the_go_shape(seeded: Server) -> None:
    base = f"http://127.0.0.1:{seeded.port}/stats/track/acme/pageview"
    _same(
        _go(seeded, "/stats/track/acme/pageview/2013"),
        {
            "type": "track",
            "account": "acme",
            "event": "pageview",
            "year": "2013",
            "month": "",
            "day": "",
            "links": [
                f"{base}/2013/1",
                f"{base}/2013/1/31",
                f"{base}/2013/9",
                f"{base}/2013/9/5",
                f"{base}/2013/9/10",
                f"{base}/2013/10",
                f"{base}/2013/10/1",
            ],
            "data": {"1": 1, "10": 1, "9": 4},
        },
    )
    _same(
        _go(seeded, "/stats/track/acme/pageview/2013/9"),
        {
            "type": "track",
            "account": "acme",
            "event": "pageview",
            "year": "2013",
            "month": "9",
            "day": "",
            "links": [f"{base}/2013/9/5", f"{base}/2013/9/10"],
            "data": {"10": 1, "5": 3},
        },
    )
    _same(
        _go(seeded, "/stats/track/acme/pageview/2013/9/5"),
        {
            "type": "track",
            "account": "acme",
            "event": "pageview",
            "year": "2013",
            "month": "9",
            "day": "5",
            "links": [],
            "data": {"0": 1, "14": 2},
        },
    )


def test_the_url_parts_are_echoed_as_given_and_all_is_every_account(seeded: Server) -> None:
    # Go echoed the URL's strings; "09" reads September as "9" does.
    got = _go(seeded, "/stats/track/all/pageview/2013/09/05")
    _same(
        got,
        {
            "type": "track",
            "account": "all",
            "event": "pageview",
            "year": "2013",
            "month": "09",
            "day": "05",
            "links": [],
            "data": {"0": 1, "14": 3},
        },
    )


def test_a_key_with_no_data_is_an_empty_hash_not_an_error(seeded: Server) -> None:
    for path, when in [
        ("/stats/track/acme/pageview/2012", ("2012", "", "")),
        ("/stats/track/acme/pageview/2013/2", ("2013", "2", "")),
        ("/stats/track/nobody/pageview/2013/9/5", ("2013", "9", "5")),
        ("/stats/funnels/acme/pageview/2013", ("2013", "", "")),
    ]:
        kind, account, event = path.split("/")[2:5]
        year, month, day = when
        _same(
            _go(seeded, path),
            {
                "type": kind,
                "account": account,
                "event": event,
                "year": year,
                "month": month,
                "day": day,
                "links": [],
                "data": {},
            },
        )


def test_funnels_by_year_month_and_day(seeded: Server) -> None:
    base = f"http://127.0.0.1:{seeded.port}/stats/funnels/acme/order"
    _same(
        _go(seeded, "/stats/funnels/acme/order/2013"),
        {
            "type": "funnels",
            "account": "acme",
            "event": "order",
            "year": "2013",
            "month": "",
            "day": "",
            # January's order had no status: no breakdown key, no link.
            "links": [f"{base}/2013/9", f"{base}/2013/10"],
            "data": {"paid": 2, "pending": 1},
        },
    )
    _same(
        _go(seeded, "/stats/funnels/all/order/2013/9"),
        {
            "type": "funnels",
            "account": "all",
            "event": "order",
            "year": "2013",
            "month": "9",
            "day": "",
            "links": [],
            "data": {"paid": 2},
        },
    )
    # Go routed a day too, and never wrote a funnel by day.
    _same(
        _go(seeded, "/stats/funnels/acme/order/2013/9/6"),
        {
            "type": "funnels",
            "account": "acme",
            "event": "order",
            "year": "2013",
            "month": "9",
            "day": "6",
            "links": [],
            "data": {},
        },
    )


def test_root_links_the_two_kinds(seeded: Server) -> None:
    base = f"http://127.0.0.1:{seeded.port}/stats"
    want = {
        "type": "",
        "account": "",
        "event": "",
        "year": "",
        "month": "",
        "day": "",
        "links": [f"{base}/track", f"{base}/funnels"],
        "data": None,
    }
    _same(_go(seeded, "/stats/"), want)
    _same(_go(seeded, "/stats"), want)


def test_links_follow_the_host_asked_for(seeded: Server) -> None:
    r = seeded.client.get("/stats/track/acme/pageview/2013/10", headers={"host": "api.stats.com"})
    assert r.json()["links"] == ["http://api.stats.com/stats/track/acme/pageview/2013/10/1"]


def test_jsonp(seeded: Server) -> None:
    plain = seeded.get("/stats/track/acme/pageview/2013/9").content
    r = seeded.get("/stats/track/acme/pageview/2013/9", callback="jQuery1910_42")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.content == b"/**/jQuery1910_42(" + plain + b");"
    bad = seeded.get("/stats/track/acme/pageview/2013/9", callback="alert(1)//")
    assert bad.status_code == 400
    assert bad.json()["error"] == "bad_callback"


def test_names_are_escaped_as_go_escaped_them(seeded: Server) -> None:
    seeded.post([_event("pageview", "a<b>&c", "2013-09-05T14:00:00Z", None)], wait="flush")
    r = seeded.get("/stats/track/a%3Cb%3E%26c/pageview/2013/9")
    assert b'"account":"a\\u003cb\\u003e\\u0026c"' in r.content
    assert r.json()["account"] == "a<b>&c"
    assert r.json()["links"] == [
        f"http://127.0.0.1:{seeded.port}/stats/track/a%3Cb%3E%26c/pageview/2013/9/5"
    ]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/stats/track/acme/pageview/20x3", 400, "bad_period"),
        ("/stats/track/acme/pageview/2013/13", 400, "bad_period"),
        ("/stats/track/acme/pageview/2013/2/30", 400, "bad_period"),
        ("/stats/track/acme/pageview/2013/9/5/14", 404, "not_found"),
        ("/stats/uniques/acme/pageview/2013", 404, "not_found"),
        ("/stats/track/acme/pageview", 404, "not_found"),
        ("/stats/track/acme", 404, "not_found"),
        ("/stats/track", 404, "not_found"),
    ],
)
def test_bad_paths_are_clear_json_errors(
    seeded: Server, path: str, status: int, error: str
) -> None:
    r = seeded.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == error and body["detail"]


def test_only_get_and_head(seeded: Server) -> None:
    r = seeded.client.post("/stats/track/acme/pageview/2013", content=b"{}")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.json()["error"] == "method_not_allowed"
    head = seeded.client.head("/stats/track/acme/pageview/2013")
    assert head.status_code == 200 and head.content == b""


def test_the_default_api_is_unchanged_beside_it(seeded: Server) -> None:
    got = seeded.get("/api/stats/track/acme/pageview/2013/09").json()
    assert (got["year"], got["month"], got["day"], got["total"]) == (2013, 9, None, 4)
    assert len(got["data"]) == 30 and got["data"]["5"] == 3 and got["data"]["1"] == 0
    assert got["links"]["self"] == "/api/stats/track/acme/pageview/2013/09"


def test_openapi_describes_the_routes_only_when_served(
    seeded: Server, server_factory: type[Server], tmp_path: Path
) -> None:
    on = seeded.get("/openapi.json").json()["paths"]
    assert "/stats/track/{account}/{event}/{year}/{month}/{day}" in on
    assert "/stats/funnels/{account}/{event}/{year}" in on
    (tmp_path / "off").mkdir()
    off = server_factory(tmp_path / "off").start()
    assert not any(p.startswith("/stats") for p in off.get("/openapi.json").json()["paths"])
    for path in ("/stats", "/stats/track/acme/pageview/2013"):
        r = off.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_another_prefix(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, *FLAGS, "--seed-api", "/old/stats").start()
    server.post([_event("pageview", "acme", "2013-09-05T14:00:00Z", None)], wait="flush")
    got = _go(server, "/old/stats/track/acme/pageview/2013/9")
    assert got["links"] == [
        f"http://127.0.0.1:{server.port}/old/stats/track/acme/pageview/2013/9/5"
    ]
    assert got["data"] == {"5": 1}
    assert server.get("/stats/track/acme/pageview/2013/9").status_code == 404


@pytest.mark.parametrize(
    "prefix", ["stats", "/stats/", "/", "/a//b", "/st ats", "/../x", "/api", "/badge", "/healthz"]
)
def test_a_bad_prefix_is_refused_at_start(prefix: str) -> None:
    with pytest.raises(ValueError, match="--seed-api"):
        Config.load({"seed_api": prefix}, env={})


def test_off_by_default() -> None:
    assert Config.load({}, env={}).seed_api == ""
