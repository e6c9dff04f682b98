"""The badge endpoints of a running server: counting, parameters, headers, errors."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from tallyd.badges.render import STYLES, render
from tests.conftest import Server, wait_until

pytestmark = pytest.mark.timeout(120)


def shown(r: httpx.Response) -> str:
    """The badge's text as a screen reader gets it: `label: message`."""
    assert r.status_code == 200, r.text
    return ET.fromstring(r.text).get("aria-label", "")


def total(server: Server, account: str, event: str = "hit") -> int:
    return int(
        server.get(f"/api/stats/track/{account.replace('/', '%2F')}/{event}").json()["total"]
    )


def test_seed_url_counts_and_shows_1_2_3(server: Server) -> None:
    got = [shown(server.get("/badge.svg", repo="benwilber/bashids")) for _ in range(3)]
    assert got == ["hits: 1", "hits: 2", "hits: 3"]
    assert total(server, "benwilber/bashids") == 3
    # The same id by the path form, with the slash plain or escaped.
    assert shown(server.get("/badge/benwilber/bashids.svg")) == "hits: 4"
    assert shown(server.get("/badge/benwilber%2Fbashids.svg")) == "hits: 5"
    assert 'tallyd_events_accepted_total{source="badge"} 5' in server.get("/metrics").text


def test_headers_defeat_caches(server: Server) -> None:
    r = server.get("/badge/acme.svg")
    assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert r.headers["cache-control"] == "max-age=0, no-cache, no-store, must-revalidate"
    assert parsedate_to_datetime(r.headers["expires"]) < datetime.now(UTC)
    root = ET.fromstring(r.text)
    assert root.get("role") == "img" and root.find("{http://www.w3.org/2000/svg}title") is not None


def test_increment_0_and_head_do_not_count(server: Server) -> None:
    assert shown(server.get("/badge/acme.svg")) == "hits: 1"
    assert shown(server.get("/badge/acme.svg", increment="0")) == "hits: 1"
    assert server.client.head("/badge/acme.svg").status_code == 200
    assert shown(server.get("/badge/acme.svg")) == "hits: 2"
    assert total(server, "acme") == 2


def test_every_style_matches_the_renderer(server: Server) -> None:
    for i, style in enumerate(STYLES):
        r = server.get(
            "/badge/styled.svg",
            style=style,
            label="views",
            color="ff69b4",
            label_color="informational",
        )
        assert r.text == render("views", str(i + 1), style, "ff69b4", "informational")


def test_metrics_formats_base_and_event(server: Server) -> None:
    server.post([{"event": "hit", "account": "big", "time": "2015-06-01T00:00:00Z"}] * 3)
    assert shown(server.get("/badge/big.svg", metric="total")) == "hits: 4"
    assert shown(server.get("/badge/big.svg", metric="year")) == "hits: 2"
    assert shown(server.get("/badge/big.svg", metric="month")) == "hits: 3"
    assert shown(server.get("/badge/big.svg", metric="today")) == "hits: 4"
    assert shown(server.get("/badge/big.svg", metric="total", base="1234567")) == "hits: 1,234,575"
    r = server.get("/badge/big.svg", base="1234567", format="short", increment="0")
    assert shown(r) == "hits: 1.2M"
    r = server.get("/badge/big.svg", base="1234567", format="plain", increment="0")
    assert shown(r) == "hits: 1234575"
    assert shown(server.get("/badge/big.svg", event="star", label="stars")) == "stars: 1"
    assert total(server, "big", "star") == 1
    assert total(server, "big") == 3 + 5  # posted, then five counted views


def test_texts_are_escaped(server: Server) -> None:
    label = "<script>alert(\"x\")</script> & 'quotes' 🎉 שלום"
    r = server.get("/badge/x%3Cy%3E.svg", label=label)
    root = ET.fromstring(r.text)
    assert root.get("aria-label") == f"{label}: 1"
    assert "<script>" not in r.text


def pipelined(port: int, requests: list[bytes]) -> list[bytes]:
    """Send requests down one connection without waiting; returns the status lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        while data.count(b"HTTP/1.1 ") < len(requests):
            chunk = sock.recv(1 << 16)
            assert chunk, "the server closed the connection"
            data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", data)


def test_unique_visitors_estimate(server: Server) -> None:
    clients = 10_000
    views = [
        f"GET /badge/site.svg HTTP/1.1\r\nHost: x\r\nUser-Agent: client-{i}\r\n\r\n".encode()
        for i in range(clients)
    ]
    # Returning visitors the same day do not add to the estimate.
    views += views[::10]
    for i in range(0, len(views), 500):
        statuses = pipelined(server.port, views[i : i + 500])
        assert statuses == [b"HTTP/1.1 200 OK"] * len(views[i : i + 500])
    assert wait_until(lambda: total(server, "site"), 11_000) == 11_000
    time.sleep(0.5)  # the last visitors' batch
    r = server.get("/badge/site.svg", metric="unique", increment="0", label="visitors")
    estimate = int(shown(r).split(": ")[1].replace(",", ""))
    # HyperLogLog with 2^14 registers: 0.81% standard error; 3% is beyond 3.5 sigma.
    assert abs(estimate - clients) <= 300, estimate


def test_a_returning_visitor_stays_one_across_refreshes(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # The figure read at a refresh has the visitor in it already: it was shown as
    # 2 after every refresh. A second visitor, new to the sketch, is one more.
    server = server_factory(tmp_path, "--badge-refresh", "0.3").start()

    def unique() -> str:
        return shown(server.get("/badge/u/two.svg", metric="unique", increment="0"))

    def view(agent: str) -> httpx.Response:
        return server.client.get("/badge/u/two.svg", headers={"user-agent": agent})

    assert shown(view("visitor-one")) == "hits: 1"
    deadline = time.monotonic() + 2.5  # several refreshes and flushes
    while time.monotonic() < deadline:
        view("visitor-one")
        assert unique() == "hits: 1"
        time.sleep(0.02)
    view("visitor-two")
    assert unique() == "hits: 2"
    time.sleep(0.8)
    assert unique() == "hits: 2"


def test_figures_read_together_each_get_their_own(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # A refresh reads a `unique` figure with period totals; each total took the count
    # of the figure before it, and an owner's rollup went backwards while viewed.
    server = server_factory(tmp_path, "--badge-refresh", "0.3").start()
    agents = [{"user-agent": f"reader-{i}"} for i in range(4)]
    views = 0
    previous = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        for agent in agents:
            server.client.get("/badge/ow/r0.svg", headers=agent)
            server.client.get("/badge/ow/r1.svg", headers=agent)
            views += 2
        visitors = shown(server.get("/badge/ow/r0.svg", metric="unique", increment="0"))
        assert visitors == "hits: 4"
        rollup = int(shown(server.get("/badge/ow/*.svg", format="plain")).split(": ")[1])
        assert previous <= rollup <= views
        previous = rollup
        r0 = shown(server.get("/badge/ow/r0.svg", format="plain", increment="0"))
        assert r0 == f"hits: {views // 2}"
    assert wait_until(lambda: total(server, "ow/*"), views) == views


def test_figures_refresh_in_the_background(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--badge-refresh", "0.5").start()
    assert shown(server.get("/badge/r.svg")) == "hits: 1"
    # A hit by another route is not in the badge's figure yet...
    server.post([{"event": "hit", "account": "r"}], wait="flush")
    assert shown(server.get("/badge/r.svg")) == "hits: 2"
    time.sleep(0.7)
    # ...a stale figure is still answered at once (with this view), and read again
    # in the background, which brings the posted hit in.
    assert shown(server.get("/badge/r.svg")) == "hits: 3"
    time.sleep(0.3)
    assert shown(server.get("/badge/r.svg")) == "hits: 5"
    assert total(server, "r") == 5


def test_first_views_at_once_each_show_their_own_figure(server: Server) -> None:
    # 150 badges never viewed, each with its own count: their first views arrive
    # together (read from the store together) and each shows its own figure.
    ids = [f"first/b{i}" for i in range(150)]
    events = [
        {"event": "hit", "account": name, "time": "2013-09-05T14:03:07Z"}
        for i, name in enumerate(ids)
        for _ in range(i % 7 + 1)
    ]
    assert server.post(events, wait="flush").status_code == 202

    async def view_all() -> list[httpx.Response]:
        # A connection idle past a second is not reused: on a starved machine one
        # might reach the server's keep-alive timeout as a request goes out on it.
        limits = httpx.Limits(max_connections=64, keepalive_expiry=1)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as c:
            return await asyncio.gather(*(c.get(f"/badge/{name}.svg") for name in ids))

    answers = asyncio.run(view_all())
    assert [shown(r) for r in answers] == [f"hits: {i % 7 + 2}" for i in range(len(ids))]
