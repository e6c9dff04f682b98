"""CORS: the read API and badges are readable from other origins; ingest is not, by default."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tallyd.config import Config
from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)

ALLOW_ORIGIN = "access-control-allow-origin"
# Every GET of these answers CORS headers; the badge ones by both of the server's readers.
READ_PATHS = [
    "/api/stats/track",
    "/api/stats/track/acme",
    "/api/stats/track/acme/hit",
    "/api/stats/track/acme/hit/2013/09",
    "/api/stats/funnels/acme/order/2013",
    "/api/stats/series?account=acme&event=hit&from=2013-09-01&to=2013-09-02",
    "/api/accounts?event=hit",
    "/api/top?event=hit",
    "/openapi.json",
    "/badge.svg?repo=acme",
    "/badge/acme.svg",
    "/badge/acme.json",
]
# Answers that are errors are readable too: a page shows why.
READ_ERRORS = [
    "/api/stats/track/acme/hit/2013/13",
    "/api/accounts",
    "/api/top?event=hit&period=week",
    "/badge/acme.svg?style=round",
    "/badge/acme.json?metric=x",
]
NOT_SHARED = ["/healthz", "/metrics", "/"]
ORIGIN = {"origin": "https://elsewhere.example"}


def raw_get(port: int, path: str) -> bytes:
    """A plain GET on its own connection: the path the server reads in one pass."""
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_reads_and_badges_allow_any_origin_by_default(server: Server) -> None:
    server.post([{"event": "hit", "account": "acme", "time": "2013-09-05T10:00:00Z"}], wait="flush")
    for path in READ_PATHS + READ_ERRORS:
        for method in ("GET", "HEAD"):
            r = server.client.request(method, path, headers=ORIGIN)
            assert r.headers.get(ALLOW_ORIGIN) == "*", (method, path, r.status_code)
    # A cached badge is answered by the fast path, which carries the header as well.
    for _ in range(2):
        assert b"\r\naccess-control-allow-origin: *\r\n" in raw_get(server.port, "/badge/acme.svg")
    for path in NOT_SHARED:
        assert ALLOW_ORIGIN not in server.client.get(path, headers=ORIGIN).headers


@pytest.mark.parametrize("path", ["/api/stats/track/acme/hit", "/api/top", "/badge/a.svg"])
def test_preflight_of_a_read(server: Server, path: str) -> None:
    r = server.client.options(
        path,
        headers={
            **ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "x-requested-with, if-none-match",
        },
    )
    assert r.status_code == 204 and r.content == b""
    assert "content-length" not in r.headers and "content-type" not in r.headers
    assert r.headers[ALLOW_ORIGIN] == "*"
    assert r.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert r.headers["access-control-allow-headers"] == "x-requested-with, if-none-match"
    assert int(r.headers["access-control-max-age"]) > 0
    # Nothing is counted by a preflight of a badge.
    assert server.get("/api/stats/track/a/hit").json()["total"] == 0


def test_ingest_has_no_cors_by_default(server: Server) -> None:
    r = server.client.post("/api/events", json={"event": "hit", "account": "a"}, headers=ORIGIN)
    assert r.status_code == 202 and ALLOW_ORIGIN not in r.headers
    r = server.client.options(
        "/api/events", headers={**ORIGIN, "access-control-request-method": "POST"}
    )
    assert r.status_code == 204 and r.headers["allow"] == "POST, OPTIONS"
    assert not [h for h in r.headers if h.startswith("access-control-")]


def test_cors_ingest_opens_posting_to_one_origin(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--cors-ingest", "https://app.example").start()
    r = server.client.options(
        "/api/events",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers[ALLOW_ORIGIN] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert r.headers["access-control-allow-headers"] == "content-type"
    r = server.client.post("/api/events", json={"event": "hit", "account": "a"})
    assert r.status_code == 202 and r.headers[ALLOW_ORIGIN] == "https://app.example"
    # An ingest error is readable by that origin too.
    r = server.client.post("/api/events", content=b"{", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.headers[ALLOW_ORIGIN] == "https://app.example"


def test_cors_origin_restricts_to_one_origin(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--cors-origin", "https://example.org").start()
    for path in ("/api/stats/track", "/openapi.json", "/badge/x.svg", "/badge/x.json?style=bad"):
        assert server.get(path).headers[ALLOW_ORIGIN] == "https://example.org", path
    assert b"\r\naccess-control-allow-origin: https://example.org\r\n" in raw_get(
        server.port, "/badge/x.svg"
    )
    r = server.client.options("/api/accounts", headers={"access-control-request-method": "GET"})
    assert r.status_code == 204 and r.headers[ALLOW_ORIGIN] == "https://example.org"
    # Ingest stays closed: the two settings are separate.
    r = server.client.post("/api/events", json={"event": "hit", "account": "a"})
    assert ALLOW_ORIGIN not in r.headers


def test_cors_origin_none_turns_cors_off(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--cors-origin", "none").start()
    for path in ("/api/stats/track", "/openapi.json", "/badge/x.svg", "/badge/x.svg?style=bad"):
        r = server.get(path)
        assert r.status_code == 200 and ALLOW_ORIGIN not in r.headers, path
    assert b"access-control-" not in raw_get(server.port, "/badge/x.svg").lower()
    r = server.client.options("/api/top", headers={"access-control-request-method": "GET"})
    assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert not [h for h in r.headers if h.startswith("access-control-")]


def test_settings_from_every_source(tmp_path: Path) -> None:
    toml = tmp_path / "tallyd.toml"
    toml.write_text('cors_origin = "https://a.example"\ncors-ingest = "*"\n')
    cfg = Config.load({}, env={}, path=str(toml))
    assert (cfg.cors_origin, cfg.cors_ingest) == ("https://a.example", "*")
    cfg = Config.load({}, env={"TALLYD_CORS_ORIGIN": "none"}, path=str(toml))
    assert cfg.cors_origin == "none"
    cfg = Config.load({"cors_origin": "*"}, env={"TALLYD_CORS_ORIGIN": "none"})
    assert (cfg.cors_origin, cfg.cors_ingest) == ("*", "none")
    for bad in ("example.org", "https://example.org/path", ""):
        with pytest.raises(ValueError, match="--cors-origin"):
            Config.load({"cors_origin": bad}, env={})
    with pytest.raises(ValueError, match="--cors-ingest"):
        Config.load({"cors_ingest": "yes"}, env={})


def test_help_lists_both_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tallyd", "serve", "--help"], capture_output=True, text=True
    ).stdout
    assert "--cors-origin" in out and "TALLYD_CORS_ORIGIN" in out
    assert "--cors-ingest" in out and "TALLYD_CORS_INGEST" in out


def test_the_header_is_sent_once(server: Server) -> None:
    # Badges carry it in their own headers; nothing may add it a second time.
    for path in (
        "/api/top?event=hit",
        "/badge/once.svg",
        "/badge/once.json",
        "/badge/x.svg?style=x",
    ):
        assert server.get(path).headers.get_list(ALLOW_ORIGIN) == ["*"], path


def test_the_openapi_document_lists_every_preflight(server: Server) -> None:
    paths = server.get("/openapi.json").json()["paths"]
    # The owner actions are for the owner's own tools, never another origin's page.
    owner = [p for p in paths if p.startswith("/api/admin/")]
    shared = [p for p in paths if p.startswith(("/api/", "/badge", "/openapi")) and p not in owner]
    assert "/api/events" in shared and "/badge/{id}.json" in shared and owner
    for path in shared:
        assert "204" in paths[path]["options"]["responses"], path
    for path in ("/healthz", "/metrics", *owner):
        assert "options" not in paths[path], path


def test_a_preflight_echoes_only_header_names(server: Server) -> None:
    # What a browser never sends (markup, quotes, spaces inside a name, a huge list) is
    # not copied into the answer.
    for asked in ('<script>, "q", x y', "a" * 2000, "x-ok,\tx-also"):
        ask = {"access-control-request-method": "GET", "access-control-request-headers": asked}
        r = server.client.options("/api/stats/track", headers=ask)
        assert r.status_code == 204
        echoed = r.headers.get("access-control-allow-headers")
        assert echoed == (asked if asked.startswith("x-ok") else None), echoed
