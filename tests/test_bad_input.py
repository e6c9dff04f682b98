"""Hostile and broken input: a clear 4xx JSON error, and the server keeps serving."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.timeout(120)


def assert_error(r: object, status: int, error: str) -> None:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["error"] == error and body["detail"]
    assert "Traceback" not in r.text  # type: ignore[attr-defined]


def test_bad_bodies(server: Server) -> None:
    c = server.client
    assert_error(c.post("/api/events", content=b"{not json"), 400, "invalid_json")
    assert_error(c.post("/api/events", content=b""), 400, "empty")
    assert_error(c.post("/api/events", content=b"[]"), 400, "empty")
    r = c.post("/api/events", content=b"5")
    assert r.status_code == 400 and r.json()["errors"][0]["reason"] == "not_an_object"
    r = server.post(
        [{"type": 1, "data": {"account": "a"}}, {"type": "x", "data": {"account": None}}]
    )
    assert r.status_code == 400
    assert [e["reason"] for e in r.json()["errors"]] == ["bad_type", "missing_account"]
    # Mixed: the good ones count, the bad are named by index.
    r = c.post("/api/events", content=b'{"event":"e","account":"a"}\nnot json\n{"event":"e"}\n')
    assert r.status_code == 202
    assert r.json()["accepted"] == 1 and r.json()["rejected"] == 2
    assert [(e["index"], e["reason"]) for e in r.json()["errors"]] == [
        (1, "invalid_json"),
        (2, "missing_account"),
    ]
    metrics = c.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="http",reason="invalid_json"} 1' in metrics
    assert 'tallyd_events_accepted_total{source="http"} 1' in metrics
    # Every refusal is an HTTP error too: the bodies with nothing to count among them.
    assert 'tallyd_http_errors_total{status="400",error="rejected"} 2' in metrics
    assert 'tallyd_http_errors_total{status="400",error="empty"} 2' in metrics
    # A wait that means nothing is refused before the body is counted.
    body = b'{"event":"e","account":"a"}'
    assert_error(c.post("/api/events", params={"wait": "bogus"}, content=body), 400, "bad_wait")
    assert 'tallyd_events_accepted_total{source="http"} 1' in c.get("/metrics").text
    gzipped = c.post("/api/events", content=body, headers={"content-encoding": "gzip"})
    assert_error(gzipped, 415, "bad_encoding")


def test_oversized_body_is_413(server: Server) -> None:
    big = b"[" + b'{"event":"e","account":"a"},' * 400_000 + b'{"event":"e","account":"a"}]'
    assert len(big) > 10_000_000
    assert_error(server.client.post("/api/events", content=big), 413, "too_large")

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(200):
            yield b" " * 65536

    # Without a Content-Length (chunked), the limit still holds while reading.
    assert_error(server.client.post("/api/events", content=chunks()), 413, "too_large")
    assert server.get("/api/stats/track/a/e").json()["total"] == 0
    assert server.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "path, status, error",
    [
        ("/nope", 404, "not_found"),
        ("/api/nope", 404, "not_found"),
        ("/api/stats/track/a/e/2013/13", 400, "bad_period"),
        ("/api/stats/track/a/e/2013/02/30", 400, "bad_period"),
        ("/api/stats/track/a/e/2013/1/1/24", 400, "bad_period"),
        ("/api/stats/track/a/e/20x3", 400, "bad_period"),
        ("/api/stats/track/a/e/2013/1/1/1/1", 400, "bad_period"),
        ("/api/stats/track/a%ZZ/e", 400, "bad_path"),
        ("/api/stats/track/a%FF/e", 400, "bad_path"),
        ("/api/stats/track/a/e?callback=alert(1)//", 400, "bad_callback"),
        ("/api/stats/track/a/e?callback=" + "a" * 65, 400, "bad_callback"),
        ("/api/stats/funnels/a/e", 404, "not_found"),
        ("/api/stats/series?account=a&event=e", 400, "missing_from"),
        ("/api/stats/series?account=a&event=e&from=xx", 400, "bad_from"),
        ("/api/stats/series?account=a&event=e&from=2013-01-02&to=2013-01-01", 400, "bad_range"),
        (
            "/api/stats/series?account=a&event=e&from=2000-01-01&to=2013-01-01&interval=minute",
            400,
            "bad_range",
        ),
        ("/api/stats/series?account=a&event=e&from=2013-01-01&interval=week", 400, "bad_interval"),
        ("/api/top?event=e&period=week", 400, "bad_period"),
        ("/api/top?event=e&date=2013", 400, "bad_date"),
        ("/api/top?event=e&limit=0", 400, "bad_limit"),
        ("/api/accounts", 400, "missing_event"),
        ("/api/accounts?event=e&limit=-1", 400, "bad_limit"),
    ],
)
def test_bad_requests(server: Server, path: str, status: int, error: str) -> None:
    assert_error(server.client.get(path), status, error)


def test_wrong_method_is_405(server: Server) -> None:
    r = server.client.get("/api/events")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(server.client.delete("/api/stats/track/a/e"), 405, "method_not_allowed")


def test_garbage_on_the_socket_does_not_hurt(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x00\xff GARBAGE\r\n\r\n")
        s.recv(1024)
    assert server.post({"event": "e", "account": "a"}).status_code == 202
    assert server.get("/api/stats/track/a/e").json()["total"] == 1


def test_openapi_and_landing(server: Server) -> None:
    doc = server.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/stats/series" in doc["paths"]
    assert server.get("/").headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati"])
def test_the_last_second_counted_is_counted_in_every_zone(
    server_factory: type[Server], tmp_path: Path, zone: str
) -> None:
    # The last second: its local date is in 9999 even 14 hours ahead of UTC. The
    # next is refused: it once went into a batch that could not be expanded.
    server = server_factory(tmp_path, "--timezone", zone).start()
    last = {"event": "late", "account": "a", "time": "9999-12-31T09:59:59Z"}
    past = {**last, "time": 253402250400}
    r = server.post([last, past], wait="flush")
    assert r.status_code == 202 and r.json()["stored"] is True, r.text
    assert [e["reason"] for e in r.json()["errors"]] == ["bad_time"]
    assert server.get("/api/stats/track/a/late").json()["total"] == 1
    assert "cannot expand" not in server.log.read_text()
