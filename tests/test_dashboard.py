"""The dashboard at `/` against a real `tallyd serve`: the page without JavaScript, its
assets, the live stream over a real socket, and the page in a real (headless) Chromium."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tallyd.aggregator import Aggregator
from tallyd.dashboard.live import Live
from tallyd.expand import Expander
from tallyd.keys import KeySpace
from tallyd.metrics import Metrics
from tallyd.periods import Clock
from tallyd.retention import Retention
from tallyd.stores import open_store
from tallyd.web import HTTPError, Message, Request, Streamed, send_stream
from tests.conftest import Server, require

pytestmark = pytest.mark.timeout(60)

HOSTILE = "<script>alert(1)</script>"
# Replayed 2013: its hours and minutes are kept only with retention off.
ARGS = ("--retention-minutes", "0", "--retention-hours", "0")


def pageview(account: str, time: str) -> dict[str, Any]:
    return {"type": "pageview", "data": {"account": account, "browser": "firefox"}, "time": time}


def order(account: str, status: str, time: str) -> dict[str, Any]:
    return {"type": "order", "data": {"account": account, "status": status}, "time": time}


def data() -> list[dict[str, Any]]:
    """acme: 3 views on 5 Sept 2013, 1 on the 6th, 2 on 1 Oct; beta: 5 on 5 Sept;
    the hostile account 1 on 7 Sept; orders by status; and views today, for the tops."""
    now = datetime.now(UTC).isoformat()
    return [
        *[pageview("acme", "2013-09-05T14:03:07Z")] * 3,
        pageview("acme", "2013-09-06T09:00:00Z"),
        *[pageview("acme", "2013-10-01T00:00:00+00:00")] * 2,
        *[pageview("beta", "2013-09-05T20:10:00Z")] * 5,
        pageview(HOSTILE, "2013-09-07T10:00:00Z"),
        *[order("acme", "paid", "2013-09-05T15:00:00Z")] * 3,
        order("acme", "pending", "2013-09-09T15:00:00Z"),
        order("acme", "refunded", "2013-10-09T15:00:00Z"),
        *[pageview("beta", now)] * 2,
        pageview(HOSTILE, now),
    ]


def start(tmp: Path, *args: str) -> Server:
    server = Server(tmp, *ARGS, *args).start()
    r = server.post(data(), wait="flush")
    assert r.status_code == 202 and r.json()["stored"], r.text
    return server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("dashboard"))
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()


def table(html: str, name: str) -> list[tuple[str, str, int]]:
    """(link, label, count) of each row of the table with id `name`."""
    body = html.split(f'<table id="{name}">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r'<tr><th scope=row>(?:<a href="([^"]*)">)?([^<]*)(?:</a>)?</th><td>([\d,]+)</td>', body
    )
    return [(link, label, int(n.replace(",", ""))) for link, label, n in rows]


def test_the_page_shows_a_period_as_a_table_without_javascript(served: Server) -> None:
    r = served.get("/", account="acme", event="pageview", period="2013/09")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    rows = table(r.text, "counts")
    assert len(rows) == 30
    counts = {label: n for _, label, n in rows}
    assert counts["5"] == 3 and counts["6"] == 1 and sum(counts.values()) == 4
    assert rows[4][0] == "/?account=acme&amp;event=pageview&amp;period=2013/09/05"
    assert '<tfoot><tr><th scope="row">Total</th><td>4</td></tr></tfoot>' in r.text
    # Drill down by following the links: the day, by hour; then the hour, by minute.
    day = served.client.get("/?account=acme&event=pageview&period=2013/09/05").text
    assert [(label, n) for _, label, n in table(day, "counts") if n] == [("14:00", 3)]
    hour = served.client.get("/?account=acme&event=pageview&period=2013/09/05/14").text
    assert [(link, label, n) for link, label, n in table(hour, "counts") if n] == [("", ":03", 3)]
    # The rollup `all`, and the year of a breakdown event with its funnel.
    everyone = table(
        served.get("/", account="all", event="pageview", period="2013/09").text, "counts"
    )
    assert {label: n for _, label, n in everyone if n} == {"5": 8, "6": 1, "7": 1}
    orders = served.get("/", account="acme", event="order", period="2013").text
    assert [n for _, _, n in table(orders, "counts")][8:10] == [4, 1]
    funnel = orders.split('<section id="funnel"', 1)[1].split("</section>", 1)[0]
    assert "By status, 2013" in funnel and " hidden" not in funnel.split(">", 1)[0]
    assert re.findall(r"<th scope=row>(\w+)</th><td>(\d+)</td><td>(\d+%)</td>", funnel) == [
        ("paid", "3", "60%"),
        ("pending", "1", "20%"),
        ("refunded", "1", "20%"),
    ]
    # Top accounts today and this month (the views sent with the time of the run).
    top = served.get("/", event="pageview").text
    assert [(label, n) for _, label, n in table(top, "top_day")] == [
        ("beta", 2),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", 1),
    ]
    assert table(top, "top_month") == table(top, "top_day")


def test_the_default_view_is_the_latest_year_with_counts(served: Server) -> None:
    r = served.get("/")
    assert r.status_code == 200
    # Every account's pageviews: this year's, sent with the time of the run.
    assert f'<h2 id="view-title">{datetime.now(UTC).year}</h2>' in r.text
    acme = served.get("/", account="acme", event="pageview").text
    assert '<h2 id="view-title">2013</h2>' in acme
    all_time = served.get("/", account="acme", event="pageview", period="").text
    assert [(label, n) for _, label, n in table(all_time, "counts")] == [("2013", 6)]


def test_a_bad_period_is_a_400_page_that_says_why(served: Server) -> None:
    r = served.get("/", account="acme", event="pageview", period="2013/13")
    assert r.status_code == 400
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    notice = "month must be 1..12: showing 2013 instead"
    assert f'<p class="notice" role="alert">{notice}</p>' in r.text
    assert '<h2 id="view-title">2013</h2>' in r.text


def test_every_value_is_escaped(served: Server) -> None:
    r = served.get("/", account=HOSTILE, event=HOSTILE, period="2013/09")
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "alert(1)</script>" not in r.text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in r.text
    # The hostile account's own counts, and its name in the lists of another view.
    own = served.get("/", account=HOSTILE, event="pageview", period="2013/09").text
    assert {label: n for _, label, n in table(own, "counts") if n} == {"7": 1}
    listed = served.get("/", event="pageview").text
    assert '<option value="&lt;script&gt;alert(1)&lt;/script&gt;">' in listed
    assert "<script>alert" not in own + listed
    # The script the page loads is this server's alone.
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_assets_are_served_with_their_types_and_cached_by_version(served: Server) -> None:
    page = served.get("/").text
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        link = re.search(rf'"(/dashboard/{re.escape(name)}\?v=(\w+))"', page)
        assert link is not None, name
        r = served.client.get(link[1])
        assert r.status_code == 200 and r.headers["content-type"] == f"{kind}; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"] == f'"{link[2]}"'
        assert r.headers["x-content-type-options"] == "nosniff"
        # Unversioned: revalidated, and not sent again while unchanged.
        bare = served.client.get(f"/dashboard/{name}")
        assert bare.headers["cache-control"] == "no-cache" and bare.content == r.content
        again = served.client.get(
            f"/dashboard/{name}", headers={"if-none-match": r.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
    assert served.client.get("/dashboard/nope.js").status_code == 404
    assert served.client.head("/").status_code == 200


def test_the_live_stream_sends_an_event_after_a_flush(served: Server) -> None:
    client = httpx.Client(base_url=served.url, timeout=10)
    with client, client.stream("GET", "/api/live") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["transfer-encoding"] == "chunked"
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        posted = served.post(pageview("gamma", "2013-09-20T10:00:00Z"), wait="flush")
        assert posted.json()["stored"]
        sent = time.monotonic()
        event = [line for line in _until_blank(lines, "event: flush")]
        assert time.monotonic() - sent < 2
        assert event[0] == "event: flush" and event[1].startswith('data: {"batch":')
    gauge = served.get("/metrics").text
    assert re.search(r"^tallyd_live_streams \d", gauge, re.M)


def test_the_live_stream_hears_the_other_workers_writes(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, *ARGS, "--workers", "2").start()
    # One connection, one worker: the stream is the worker's that answered /healthz.
    client = httpx.Client(base_url=server.url, timeout=8)
    worker = client.get("/healthz").json()["worker"]
    with client.stream("GET", "/api/live") as r:
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        for _ in range(100):
            with httpx.Client(base_url=server.url, timeout=10) as other:
                if other.get("/healthz").json()["worker"] == worker:
                    continue
                posted = other.post(
                    "/api/events",
                    json=pageview("delta", "2013-09-21T10:00:00Z"),
                    params={"wait": "flush"},
                )
                assert posted.json()["stored"]
                break
        else:
            raise AssertionError("every connection reached the same worker")
        sent = time.monotonic()
        event = list(_until_blank(lines, "event: flush"))
        # The other worker's flush is seen in the store within the poll (2 s).
        assert time.monotonic() - sent < 4
        assert event[0] == "event: flush" and event[1].startswith('data: {"batch":null,')
    client.close()
    assert server.stop() == 0


def _until_blank(lines: Iterator[str], first: str) -> Iterator[str]:
    """The lines of the first SSE message starting with `first`, up to its blank line."""
    found = False
    for line in lines:
        found = found or line == first
        if found and not line:
            return
        if found:
            yield line


def test_sigterm_ends_an_open_stream_and_the_server_exits_promptly(tmp_path: Path) -> None:
    server = Server(tmp_path, "--shutdown-timeout", "20").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /api/live HTTP/1.1\r\nHost: x\r\n\r\n")
            got = s.recv(4096)
            while b"retry: 3000" not in got:
                got += s.recv(4096)
            assert got.startswith(b"HTTP/1.1 200 OK\r\n")
            began = time.monotonic()
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            while chunk := s.recv(4096):
                got += chunk
            ended = time.monotonic() - began
        code = server.proc.wait(10)  # not `stop`: a second SIGTERM would force the exit
        stopped = time.monotonic() - began
    finally:
        if server.proc is not None:
            server.proc.kill()
    # The stream was ended (its last chunk), not cut; everything well within 20 s.
    assert got.endswith(b"\r\n0\r\n\r\n"), got[-100:]
    assert code == 0 and ended < 2 and stopped < 5, (ended, stopped, server.log.read_text())


async def test_live_streams_are_bounded_and_a_slot_is_given_back(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/live.db")
    await store.open()
    keys, clock = KeySpace(), Clock("UTC")
    agg = Aggregator(store, Expander(keys, clock, Retention(0, 0)), Metrics())
    live = Live(agg, Metrics(), limit=1, heartbeat=0.05)
    scope = {"type": "http", "method": "GET", "path": "/api/live", "headers": []}
    stream = live.answer(Request(scope))
    assert isinstance(stream, Streamed)
    with pytest.raises(HTTPError) as refused:
        live.answer(Request(scope))
    assert refused.value.status == 503 and (b"retry-after", b"5") in refused.value.headers

    # The stream over ASGI: the request, two heartbeats, then the client goes.
    sent: list[Message] = []
    gone = asyncio.Event()
    asked = 0

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        if asked == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 4:
            gone.set()

    await asyncio.wait_for(send_stream(receive, send, stream), 5)
    assert sent[0]["status"] == 200
    assert [m.get("body") for m in sent[1:]] == [
        b"retry: 3000\n: live\n\n",
        b": heartbeat\n\n",
        b": heartbeat\n\n",
        b"",
    ]
    assert sent[-1]["more_body"] is False and live.open == 0
    assert isinstance(live.answer(Request(scope)), Streamed)
    await store.close()


def test_the_dashboard_in_a_browser(server_factory: type[Server], tmp_path: Path) -> None:
    chromium = require("chromium")
    server = server_factory(tmp_path, *ARGS).start()
    assert server.post(data(), wait="flush").status_code == 202
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            _browse(browser.new_page(), server, tmp_path)
        finally:
            browser.close()


def _browse(page: Page, server: Server, tmp_path: Path) -> None:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("dialog", lambda dialog: problems.append(f"a dialog: {dialog.message}"))
    page.goto(f"{server.url}/?account=acme&event=pageview&period=2013")
    page.wait_for_selector(".bars .bar")
    # A year's bars: September (4) twice as high as October (2), the others flat.
    heights = page.eval_on_selector_all(
        ".bars .fill", "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert len(heights) == 12 and heights[8] > 100
    assert heights[9] == pytest.approx(heights[8] / 2, abs=1)
    assert [h for i, h in enumerate(heights) if i not in (8, 9)] == [0] * 10

    # Click September: its days, the URL says so, and nothing was reloaded.
    page.evaluate("window.stayed = true")
    page.click('.bars a[aria-label="Sep: 4"]')
    page.wait_for_url("**/?account=acme&event=pageview&period=2013/09")
    expect(page.locator("#view-title")).to_have_text("September 2013")
    days = page.eval_on_selector_all(".bars .bar", "els => els.map(e => +e.dataset.count)")
    assert days[4:6] == [3, 1] and sum(days) == 4

    # An event counted meanwhile shows up without a reload (the live stream).
    expect(page.locator("#live")).to_have_text("Live")
    assert server.post(pageview("acme", "2013-09-06T11:00:00Z"), wait="flush").json()["stored"]
    expect(page.locator(".bars .bar").nth(5)).to_have_attribute("data-count", "2", timeout=5000)
    fills = page.eval_on_selector_all(
        ".bars .fill", "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert fills[5] == pytest.approx(fills[4] * 2 / 3, abs=1)
    assert page.evaluate("window.stayed") is True

    # Back to the year, then a bar opened from the keyboard.
    page.go_back()
    page.wait_for_url("**/?account=acme&event=pageview&period=2013")
    expect(page.locator("#view-title")).to_have_text("2013")
    page.focus('.bars a[aria-label="Oct: 2"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/?account=acme&event=pageview&period=2013/10")
    assert page.evaluate("window.stayed") is True

    # The badge builder: a preview that loads and does not count, and its Markdown.
    page.fill('#badge-form [name="id"]', "acme/site")
    page.fill('#badge-form [name="label"]', "views")
    page.select_option('#badge-form [name="style"]', "for-the-badge")
    preview = page.locator("#badge-preview")
    expect(preview).to_have_attribute("src", re.compile(r"^/badge/acme/site\.svg\?.*for-the-badge"))
    assert preview.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    markdown = page.input_value("#badge-markdown")
    query = "label=views&style=for-the-badge&metric=total&color=44cc11"
    badge = f"{server.url}/badge/acme/site.svg?{query}"
    assert markdown == f"![views]({badge})"
    assert server.get("/api/stats/track/acme%2Fsite/hit").json()["total"] == 0
    # What the Markdown shows renders, and counts its view.
    width = page.evaluate(
        "url => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth); "
        "i.onerror = () => ok(0); i.src = url; })",
        badge,
    )
    assert width > 0
    assert server.get("/api/stats/track/acme%2Fsite/hit").json()["total"] == 1

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(tmp_path / "dashboard-dark.png"), full_page=True)

    # An event with a breakdown: its funnel for the month.
    page.goto(f"{server.url}/?account=acme&event=order&period=2013/09")
    expect(page.locator("#funnel-title")).to_have_text("By status, September 2013")
    rows = page.locator("#funnel tbody tr").all_inner_texts()
    assert [row.split("\t") for row in rows] == [["paid", "3", "75%"], ["pending", "1", "25%"]]
    page.screenshot(path=str(tmp_path / "dashboard-funnel.png"), full_page=True)

    # A hostile account name stays text in the browser too.
    page.goto(f"{server.url}/?account={quote(HOSTILE)}&event=pageview&period=2013/09")
    page.wait_for_selector(".bars .bar")
    assert page.input_value('#pick [name="account"]') == HOSTILE
    assert problems == []


def test_the_badge_builder_keeps_the_id_inside_the_badge_path(served: Server) -> None:
    chromium = require("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(f"{served.url}/?account=acme&event=pageview&period=2013")
            page.wait_for_selector(".bars .bar")
            preview = page.locator("#badge-preview")
            problem = page.locator("#badge-problem")
            expect(problem).to_be_hidden()

            # What a URL or Markdown reads as syntax is encoded, part by part.
            page.fill('#badge-form [name="id"]', "o w/n?a#m(e)")
            path = "/badge/o%20w/n%3Fa%23m%28e%29.svg"
            expect(preview).to_have_attribute("src", re.compile(f"^{re.escape(path)}\\?"))
            assert page.input_value("#badge-markdown").startswith(f"![hits]({served.url}{path}?")

            # `.` and `..` parts would leave /badge/; empty parts the server refuses.
            for bad, says in [
                ("../../api/admin/x", "may not be . or .."),
                ("acme/./site", "may not be . or .."),
                ("acme//site", "may not be empty"),
                ("/acme", "may not be empty"),
                ("", "Give the badge an id"),
            ]:
                page.fill('#badge-form [name="id"]', bad)
                expect(problem).to_be_visible()
                expect(problem).to_contain_text(says)
                expect(preview).not_to_have_attribute("src", re.compile("."))
                assert page.input_value("#badge-markdown") == ""

            page.fill('#badge-form [name="id"]', "acme/site")
            expect(problem).to_be_hidden()
            expect(preview).to_have_attribute("src", re.compile(r"^/badge/acme/site\.svg\?"))
            assert not [
                url
                for url in asked
                if "/api/admin" in url or ("/badge/" not in url and url.endswith(".svg"))
            ]

            # The label is alt text: what Markdown reads as syntax is escaped.
            page.fill('#badge-form [name="label"]', "a\\ [b]")
            assert page.input_value("#badge-markdown").startswith("![a\\\\ \\[b\\]](")
            page.fill('#badge-form [name="label"]', "x" * 150)
            assert page.input_value('#badge-form [name="label"]') == "x" * 100
        finally:
            browser.close()
