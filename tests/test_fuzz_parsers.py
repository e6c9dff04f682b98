"""Fuzzing every parser of outside input: whatever arrives, the answer is a value or
the documented rejection (`Rejected`, `HTTPError`), never another exception, never a
5xx, and a badge is always well-formed XML with no markup taken from its input."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import string
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tallyd.hotpath as compiled
from tallyd.badges.params import BadgeParams, check_id, fallback, parse_params
from tallyd.badges.render import STYLES, clean, template
from tallyd.badges.spark import sparkline
from tallyd.config import Config
from tallyd.events import Event, Rejected, check_name, parse, parse_many, parse_time
from tallyd.ingest.syslog import event_of, hit_time, message_of, parse_time_local
from tallyd.ingest.zmq import BAD_JSON, BAD_MSGPACK, _decode_one, unpack
from tallyd.rules import MAX_NAME, reserved
from tallyd.server import Parts, assemble
from tallyd.web import HTTPError, split_path
from tests.test_hotpath import BREAKDOWNS, NOW, NOW_MINUTE, PURE

pytestmark = pytest.mark.timeout(120)

# Bounded, and the same examples on every run: CI reproduces what a laptop saw.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODULES = [compiled, PURE]

# -- values ------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["acme", "pageview", "order", "hit", "all", "a/*", "owner/name", ""]),
    st.text(max_size=8),
    st.text(min_size=MAX_NAME - 1, max_size=MAX_NAME + 1, alphabet="ab"),
)
TIMES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "2013-09-05T14:03:07Z",
            "2013-09-05 09:04:16 -0400",
            "1.378387063e+09",
            "0000-00-00",
            "2013-02-30T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "1969-12-31T23:59:59Z",
        ]
    ),
    st.text(alphabet="0123456789-:.TZ +e", max_size=30),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(NAMES, JSON_VALUES),
        "event": st.one_of(NAMES, JSON_VALUES),
        "account": st.one_of(NAMES, JSON_VALUES),
        "data": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"account": st.one_of(NAMES, JSON_VALUES), "status": SCALARS}
            ),
            JSON_VALUES,
        ),
        "status": SCALARS,
        "time": st.one_of(TIMES, JSON_VALUES),
        "id": st.one_of(st.integers(), st.floats(), NAMES, JSON_VALUES),
        "seq": st.one_of(st.integers(-(2**70), 2**70), JSON_VALUES),
        "publisher": st.one_of(NAMES, JSON_VALUES),
    },
)


def to_json(obj: Any) -> bytes:
    # json, not orjson: the values may hold integers past 64 bits and NaN.
    return json.dumps(obj).encode()


@st.composite
def damaged(draw: st.DrawFn, payload: bytes) -> bytes:
    """`payload` with a few bytes changed, cut short, or as it was."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.sampled_from(b'{}[]",:\\ \x00\xff0e-.'))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


EVENT_BYTES = st.one_of(
    st.binary(max_size=80),
    EVENTS.map(to_json).flatmap(damaged),
    EVENTS.map(lambda e: msgpack.packb(e, default=str)),
)


def assert_event(ev: Event) -> None:
    account, event, minute, bval, eid = ev
    assert check_name(account, "account") == account and not reserved(account)
    assert check_name(event, "type") == event
    assert type(minute) is int and minute >= 0
    assert bval is None or type(bval) is str
    assert eid is None or (type(eid) is str and eid)


# -- the event parser ---------------------------------------------------------------


@FUZZ
@given(st.one_of(EVENTS, JSON_VALUES))
@example({"type": "x", "data": {"account": "a"}, "time": 10**400 // 10**390})
@example({"event": "x", "account": "a", "time": "9999-12-31T23:59:59-01:00"})
def test_parse_answers_an_event_or_a_rejection(obj: Any) -> None:
    try:
        ev = parse(obj, BREAKDOWNS, NOW)
    except Rejected as err:
        assert err.reason and err.detail
        return
    assert_event(ev)


@FUZZ
@given(st.one_of(TIMES, JSON_VALUES))
def test_parse_time_answers_seconds_or_bad_time(value: Any) -> None:
    try:
        t = parse_time(value)
    except Rejected as err:
        assert err.reason == "bad_time"
        return
    assert 0 <= t <= 253402300799


@FUZZ
@given(st.lists(st.one_of(EVENTS, JSON_VALUES), max_size=6))
def test_parse_many_accounts_for_every_item(objs: list[Any]) -> None:
    known: set[str] = set()
    cells, with_ids, rejected = parse_many(list(enumerate(objs)), BREAKDOWNS, NOW, known)
    assert len(cells) + len(with_ids) + len(rejected) == len(objs)
    assert not any(reserved(n) for n in known)
    for ev in with_ids:
        assert_event(ev)


@FUZZ
@given(EVENT_BYTES, st.sets(NAMES, max_size=4))
def test_hot_path_reads_any_bytes_as_the_plain_code_does(payload: bytes, known: set[str]) -> None:
    # The compiled fast path and its pure-Python source agree on every input, and
    # whatever they count in place, the full parser accepts.
    results = []
    for mod in MODULES:
        cells: dict[Any, int] = {}
        ids: list[Any] = []
        r = mod.Counter(set(known), BREAKDOWNS, NOW_MINUTE, cells, ids).event(payload)
        results.append((r, cells, ids))
    assert results[0] == results[1]
    _, cells, ids = results[0]
    for account, event, _, _ in cells:
        check_name(account, "account")
        check_name(event, "type")
    for ev in ids:
        assert_event(ev)


@FUZZ
@given(st.lists(EVENT_BYTES, max_size=5), st.sampled_from([b"\n", b",", b"\r\n"]), st.data())
def test_hot_path_reads_any_body_as_the_plain_code_does(
    items: list[bytes], sep: bytes, data: st.DataObject
) -> None:
    body = data.draw(damaged(b"[" + sep.join(items) + b"]" if sep == b"," else sep.join(items)))
    results = []
    for mod in MODULES:
        cells: dict[Any, int] = {}
        slow: list[tuple[int, bytes]] = []
        c = mod.Counter({"acme", "pageview"}, BREAKDOWNS, NOW_MINUTE, cells, [])
        results.append((mod.count_body(c, body, slow), cells, slow))
    assert results[0] == results[1]


# -- ZeroMQ frames ------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=20), st.one_of(st.none(), EVENT_BYTES))
def test_a_zmq_payload_decodes_to_values_or_one_rejection(topic: bytes, payload: Any) -> None:
    seqs: dict[Any, int] = {}
    gaps: list[tuple[Any, int, int]] = []
    docs = _decode_one(topic, payload, seqs, gaps)
    assert isinstance(docs, list)
    if any(type(d) is Rejected for d in docs):
        assert len(docs) == 1
        assert payload is None or docs[0] in (BAD_JSON, BAD_MSGPACK)
    for key, last in seqs.items():
        assert type(last) is int and hash(key) is not None


@FUZZ
@given(st.lists(st.one_of(EVENT_BYTES, st.binary(max_size=4).map(lambda t: t + b" ")), max_size=8))
def test_zmq_receive_takes_any_frames(frames: list[bytes]) -> None:
    results = []
    for mod in MODULES:
        queue = list(frames)

        def recv(flags: int, q: list[bytes] = queue) -> bytes:
            if not q:
                raise zmq.Again()
            return q.pop(0)

        out: list[Any] = []
        gaps: list[Any] = []
        seqs: dict[Any, int] = {}
        pending: dict[Any, int] = {}
        counter = mod.Counter({"acme", "pageview"}, BREAKDOWNS, NOW_MINUTE, pending, [])
        n, counted, odd = mod.receive(
            counter, recv, 100, zmq.Again, orjson.loads, orjson.JSONDecodeError,
            unpack, BAD_JSON, BAD_MSGPACK, seqs, gaps, out,
        )  # fmt: skip
        assert counted >= 0 and n <= len(frames)
        assert odd is None or odd in frames
        results.append((n, counted, odd, out, gaps, seqs, pending, queue))
    # By repr: a msgpack NaN is no equal of itself.
    assert repr(results[0]) == repr(results[1])


# -- syslog lines -------------------------------------------------------------------

HOSTS = st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=1, max_size=10)
TAGS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
MESSAGES = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda d, i: f'"{d}","{i}"'.encode(),
        st.one_of(TIMES.map(str), st.text(max_size=12)),
        st.text(max_size=12),
    ),
    EVENTS.map(to_json),
)


@st.composite
def syslog_lines(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """An RFC 3164 or RFC 5424 datagram, its tag and its message."""
    tag, msg = draw(TAGS).encode(), draw(MESSAGES).rstrip(b"\r\n\x00").lstrip(b" ")
    if msg.startswith(b"\xef\xbb\xbf"):
        msg = msg[3:]
    pri = draw(st.integers(0, 191))
    if draw(st.booleans()):
        day = draw(st.integers(1, 31))
        head = f"<{pri}>Dec {day:2d} 17:00:00 {draw(HOSTS)} {tag.decode()}[1]: "
    else:
        head = f"<{pri}>1 2026-12-02T17:00:00Z {draw(HOSTS)} {tag.decode()} - - - "
    return head.encode() + msg, tag + b"[1]" if head.endswith("[1]: ") else tag, msg


@FUZZ
@given(st.one_of(st.binary(max_size=80), st.binary(max_size=60).map(lambda b: b"<13>" + b)))
def test_message_of_any_datagram(datagram: bytes) -> None:
    got = message_of(datagram)
    assert got is None or all(isinstance(part, bytes) for part in got)


@FUZZ
@given(syslog_lines())
def test_message_of_reads_both_syslog_forms(line: tuple[bytes, bytes, bytes]) -> None:
    datagram, tag, msg = line
    got = message_of(datagram)
    assert got is not None and got[1] == msg, datagram
    assert got[0] == tag


@FUZZ
@given(MESSAGES)
def test_event_of_any_message(msg: bytes) -> None:
    ev = event_of(msg, "hit")
    if type(ev) is Rejected:
        assert ev.reason in ("bad_line", "bad_time", "invalid_json")
        return
    if not msg.strip().startswith(b"{"):
        assert ev["event"] == "hit" and isinstance(ev["account"], str)
        assert "time" not in ev or type(ev["time"]) is int


@FUZZ
@given(st.one_of(st.binary(max_size=40), TIMES.map(lambda t: str(t).encode())))
def test_hit_time_answers_seconds_or_bad_time(date: bytes) -> None:
    try:
        t = hit_time(date)
    except Rejected as err:
        assert err.reason == "bad_time"
        return
    assert t is None or 0 <= t <= 253402300799


@FUZZ
@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 1)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_parse_time_local_reads_what_nginx_writes(when: datetime, offset: int) -> None:
    dt = when.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset)))
    # nginx's $time_local: English month names, whatever the locale.
    month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][
        dt.month - 1
    ]
    sign, off = ("-", -offset) if offset < 0 else ("+", offset)
    text = f"{dt.day:02d}/{month}/{dt.year:04d}:{dt:%H:%M:%S} {sign}{off // 60:02d}{off % 60:02d}"
    assert parse_time_local(text) == dt.timestamp()
    assert hit_time(text.encode()) == int(dt.timestamp())


@FUZZ
@given(
    st.text(max_size=40),
    st.from_regex(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", fullmatch=True),
)
def test_parse_time_local_refuses_anything_else(text: str, shaped: str) -> None:
    for value in (text, shaped):
        try:
            t = parse_time_local(value)
        except Rejected as err:
            assert err.reason == "bad_time"
        else:
            assert 0 <= t <= 253402300799


# -- badge parameters and drawings --------------------------------------------------

# Markup, entities, quotes, control characters and text XML cannot hold.
HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("<>&\"'/=;:!-[]? \t\n\r\x00\x0b\x1f\x7f\x85\u2028\ufffe\uffff")),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
) | st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><svg onload=alert(1)>',
        "]]><x/>",
        "&amp;&#x3C;&lt;",
        "<!--",
        "<?xml version='1.0'?>",
        "\ud800",
    ]
)
# Every element a badge is drawn with (badge-maker's, a logo's <image>, theme=auto's
# <style>, a sparkline's <polyline>): any other would have come from the input.
ELEMENTS = {
    "svg",
    "title",
    "linearGradient",
    "stop",
    "clipPath",
    "mask",
    "rect",
    "g",
    "text",
    "image",
    "path",
    "style",
    "a",
    "defs",
    "polyline",
    "desc",
}


def check_svg(svg: str, *texts: str) -> None:
    """Well-formed XML, made of badge elements only, and no handler or script."""
    root = ET.fromstring(svg.encode())
    for el in root.iter():
        tag = el.tag.rpartition("}")[2]
        assert tag in ELEMENTS, (tag, svg)
        assert not any(name.lower().startswith("on") for name in el.attrib), svg
    for text in texts:
        for piece in ("<script", "<svg onload", "<x/>", "<!--"):
            if piece in text:
                assert piece not in svg.replace('<svg xmlns="', "")


def quote_all(value: str) -> str:
    return "".join(f"%{b:02X}" for b in value.encode("utf-8", "surrogatepass"))


def logo_of(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8", "replace")).decode()


LOGOS = st.one_of(
    st.sampled_from(["github", "python", "nope-not-an-icon", ""]),
    HOSTILE,
    HOSTILE.map(
        lambda t: logo_of(f'<svg xmlns="http://www.w3.org/2000/svg"><path d="{t}"/>{t}</svg>')
    ),
    st.sampled_from(
        [
            logo_of('<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>'),
            logo_of("<svg><script>x()</script></svg>"),
            logo_of('<!DOCTYPE svg [<!ENTITY x "y">]><svg>&x;</svg>'),
        ]
    ),
)
COLOURS = st.one_of(
    st.sampled_from(["blue", "ff69b4", "#ff69b4", "rgb(1,2,3)", "informational", ""]), HOSTILE
)
QUERY_NAMES = [
    "label",
    "color",
    "label_color",
    "labelColor",
    "style",
    "logo",
    "logo_color",
    "logoColor",
    "theme",
    "metric",
    "format",
    "base",
    "increment",
    "event",
    "tz",
    "count",
    "repo",
    "callback",
]
QUERY_VALUES = st.one_of(
    HOSTILE,
    COLOURS,
    LOGOS,
    st.sampled_from([*STYLES, "auto", "spark7", "unique", "short", "0", "1", "Europe/Madrid"]),
    st.integers(-5, 10**17).map(str),
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), QUERY_VALUES), max_size=6))
    q = "&".join(f"{k}={quote_all(v)}" for k, v in pairs).encode()
    return draw(st.one_of(st.just(q), damaged(q), st.binary(max_size=30)))


@FUZZ
@given(queries())
@example(b"label=%FF")
@example(b"logo=data:")
def test_badge_parameters_are_valid_or_a_400(query: bytes) -> None:
    try:
        params, repo = parse_params(query)
    except HTTPError as err:
        assert err.status == 400 and err.error and err.detail
    else:
        assert isinstance(params, BadgeParams)
        assert repo is None or check_id(repo, "repo") == repo
    label, style = fallback(query)
    assert style in STYLES and isinstance(label, str)


@FUZZ
@given(st.sampled_from(STYLES), HOSTILE, HOSTILE, COLOURS, COLOURS, st.sampled_from([None, "auto"]))
@example("flat", "<b>", "a&b", "red", "blue", None)
def test_a_badge_from_any_text_is_xml_without_its_markup(
    style: str, label: str, message: str, color: str, label_color: str, theme: str | None
) -> None:
    svg = template(style, label, color, label_color, None, theme)(message).decode()
    check_svg(svg, label, message)
    # The texts come back as text: escaped, not dropped or cut.
    title = ET.fromstring(svg.encode()).find("{http://www.w3.org/2000/svg}title")
    assert title is not None
    said = (title.text or "").upper()  # for-the-badge says it in capitals

    def as_read(text: str) -> str:
        # An XML reader turns CR LF and CR into LF (XML 1.0 §2.11), as a browser does.
        return clean(text).replace("\r\n", "\n").replace("\r", "\n").upper()

    assert as_read(label) in said and as_read(message) in said


@FUZZ
@given(HOSTILE, COLOURS, st.lists(st.integers(0, 10**12), min_size=1, max_size=30))
def test_a_sparkline_from_any_text_is_xml_without_its_markup(
    label: str, color: str, counts: list[int]
) -> None:
    svg = sparkline(label, color, None, counts, [str(n) for n in counts])
    check_svg(svg, label)


@FUZZ
@given(HOSTILE, LOGOS, st.sampled_from(STYLES), COLOURS)
def test_a_badge_with_any_logo_is_xml_without_its_markup(
    label: str, logo: str, style: str, logo_color: str
) -> None:
    query = f"label={quote_all(label)}&logo={quote_all(logo)}&style={style}"
    query += f"&logo_color={quote_all(logo_color)}"
    try:
        params, _ = parse_params(query.encode())
    except HTTPError as err:
        assert err.status == 400
        return
    svg = template(params.style, params.label, None, None, params.logo, params.theme)("12").decode()
    check_svg(svg, label, logo)


# -- requests through the app --------------------------------------------------------


class InProcess:
    """The ASGI app of `tallyd serve`, called as the HTTP server calls it."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.parts: Parts = assemble(Config(store=f"sqlite:///{tmp}/fuzz.db"))
        self.loop.run_until_complete(self.parts.store.open())

    def close(self) -> None:
        self.loop.run_until_complete(self.parts.store.close())
        self.loop.close()

    def request(
        self, method: str, raw_path: bytes, query: bytes, body: bytes = b""
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        scope = {
            "type": "http",
            "method": method,
            "path": raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": query,
            "headers": [(b"user-agent", b"fuzz"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
        }
        fast = self.parts.app.fast(scope)
        if fast is not None:
            return fast.status, {b"content-type": fast.content_type}, fast.body
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        self.loop.run_until_complete(self.parts.app(scope, receive, send))
        start, end = sent
        return start["status"], dict(start["headers"]), end["body"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    a = InProcess(tmp_path_factory.mktemp("fuzz"))
    yield a
    a.close()


PATH_STARTS = [
    "/",
    "/badge/",
    "/badge.svg",
    "/badge.json",
    "/api/stats/track/",
    "/api/stats/funnels/",
    "/api/stats/series",
    "/api/accounts",
    "/api/top",
    "/api/events",
    "/openapi.json",
    "/healthz",
    "/metrics",
]
SEGMENTS = st.one_of(
    st.sampled_from(["acme", "hit", "2013", "9", "02", "31", "24", "x.svg", "y.json", "*", ".."]),
    st.text(alphabet="%2Fafz09.-_~/ ", max_size=8),
    HOSTILE.map(quote_all),
)


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(PATH_STARTS)) + "/".join(draw(st.lists(SEGMENTS, max_size=6)))
    path += draw(st.sampled_from(["", ".svg", ".json", "/"]))
    raw = path.encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(raw), damaged(raw).map(lambda p: b"/" + p.lstrip(b"/"))))


@FUZZ
@given(
    st.sampled_from(["GET", "GET", "GET", "HEAD", "OPTIONS", "POST", "DELETE"]),
    paths(),
    queries(),
)
@example("GET", b"/badge/a%2F.svg", b"")
@example("GET", b"/api/stats/track/a/b/2013/02/30", b"callback=a..b")
def test_any_request_is_answered_without_a_server_error(
    app: InProcess, method: str, raw_path: bytes, query: bytes
) -> None:
    status, headers, body = app.request(method, raw_path, query)
    assert status < 500, (status, body)
    assert b"Traceback" not in body
    content_type = headers[b"content-type"]
    path = raw_path.rstrip(b"/")
    is_badge = path.startswith(b"/badge/") or path in (b"/badge", b"/badge.svg", b"/badge.json")
    if is_badge and method in ("GET", "HEAD"):
        # Every badge URL answers an image (or the endpoint JSON), status 200.
        assert status == 200, (status, body, method, raw_path, query)
        if content_type.startswith(b"image/svg+xml"):
            check_svg(body.decode())
        else:
            assert content_type == b"application/json"
            assert set(orjson.loads(body)) >= {"schemaVersion", "label", "message"}
    elif status >= 400:
        assert content_type == b"application/json", (status, body)
        error = orjson.loads(body)
        assert error["error"] and error["detail"]


@FUZZ
@given(
    st.one_of(
        EVENT_BYTES,
        st.lists(EVENTS, min_size=1, max_size=5).map(to_json).flatmap(damaged),
        st.lists(EVENT_BYTES, max_size=5).map(b"\n".join),
    )
)
@example(b'{"event": "e", "account": "a", "time": 1e400}')
def test_any_posted_body_is_counted_or_refused(app: InProcess, body: bytes) -> None:
    status, _, answer = app.request("POST", b"/api/events", b"", body)
    assert status in (202, 400), (status, answer)
    doc = orjson.loads(answer)
    if status == 202:
        assert doc["accepted"] + doc["duplicates"] >= 1
        assert doc["rejected"] == len(doc["errors"]) or doc["rejected"] > 100
    else:
        assert doc["error"] and doc["detail"]


@FUZZ
@given(st.binary(max_size=40).map(lambda b: b"/" + b))
def test_split_path_answers_segments_or_a_400(raw: bytes) -> None:
    try:
        parts = split_path(raw.decode("latin-1"), decode=True)
    except HTTPError as err:
        assert err.status == 400 and err.error == "bad_path"
    else:
        assert all(isinstance(p, str) for p in parts)


OFFSETS = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))]
)
DATES = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    st.dates().map(str),
    st.sampled_from(["9999-12-31", "0001-01-01", "9999-12-31T23:59", "2013-09", "2013-02-30", ""]),
    st.text(alphabet="0123456789-:T+Z ", max_size=20),
)


@FUZZ
@given(
    st.sampled_from(["series", "top", "accounts"]),
    DATES,
    DATES,
    st.sampled_from(["minute", "hour", "day", "month", "year", "week", ""]),
    st.sampled_from(["day", "month", "json", "csv", "", "x"]),
    st.one_of(st.integers(-1, 2000).map(str), st.text(max_size=3)),
)
@example("series", "0001-01-01T00:00:00+14:00", "2013-01-01", "day", "json", "")
@example("series", "2013-01-01T00:00:00+00:00", "2013-01-02", "day", "json", "")
@example("series", "9999-12-31", "9999-12-31", "day", "json", "")
@example("series", "9999-12-31T23:00", "9999-12-31T23:30", "hour", "csv", "")
def test_any_read_api_query_is_answered_without_a_server_error(
    app: InProcess, what: str, first: str, second: str, interval: str, kind: str, limit: str
) -> None:
    q = {
        "series": {"account": "a", "event": "e", "from": first, "to": second},
        "top": {"event": "e", "period": kind, "date": first, "limit": limit},
        "accounts": {"event": "e", "prefix": first, "after": second, "limit": limit},
    }[what]
    if what == "series":
        q.update(interval=interval, format=kind)
    query = "&".join(f"{k}={quote_all(v)}" for k, v in q.items()).encode()
    status, headers, body = app.request(
        "GET", f"/api/{'stats/' * (what == 'series')}{what}".encode(), query
    )
    assert status in (200, 400), (status, body, query)
    if status == 400 or headers[b"content-type"] == b"application/json":
        doc = orjson.loads(body)
        assert status == 200 or (doc["error"] and doc["detail"])


def test_a_series_at_the_ends_of_time_is_a_400(app: InProcess) -> None:
    # Found by fuzzing: these were 500s (datetime overflowed past year 1 or 9999).
    for query, error in [
        (b"from=0001-01-01T00:00:00%2B14:00", "bad_from"),
        (b"from=2013-01-01&to=9999-12-31T23:59:59-14:00", "bad_to"),
        (b"from=9999-12-31&to=9999-12-31", "bad_range"),
        (b"from=9999-12-31T23:00&to=9999-12-31T23:30&interval=hour", "bad_range"),
        (b"from=9999-12-31T23:59&to=9999-12-31T23:59:30&interval=minute", "bad_range"),
    ]:
        status, _, body = app.request("GET", b"/api/stats/series", b"account=a&event=e&" + query)
        assert (status, orjson.loads(body)["error"]) == (400, error), query
    # Found by fuzzing too: one end with an offset and one without was a 500.
    status, _, body = app.request(
        "GET", b"/api/stats/series", b"account=a&event=e&from=2013-01-01T23:00-02:00&to=2013-01-03"
    )
    days = [p["time"] for p in orjson.loads(body)["points"]]
    assert status == 200 and days == ["2013-01-02", "2013-01-03"]  # from is 01:00 UTC
    status, _, body = app.request(
        "GET", b"/api/stats/series", b"account=a&event=e&from=9999-12-31&interval=year"
    )
    assert status == 400 and orjson.loads(body)["error"] == "bad_range"  # 'to' (now) before it
    status, _, body = app.request(
        "GET", b"/api/stats/series", b"account=a&event=e&from=9999-12-30&to=9999-12-30"
    )
    assert status == 200 and orjson.loads(body)["points"] == [{"time": "9999-12-30", "count": 0}]
