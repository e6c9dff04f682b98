"""Real producers' events, counted exactly through every ingest path.

The events are `bench/corpus.py`'s: the maps the Bootic bus carried, as Go's
encoding/json wrote them (sorted keys, `\\u0026` escapes, floats in exponent form,
nested objects, raw UTF-8, RFC 3339 and Ruby times with offsets, Unix seconds) and
as msgpack. `corpus.expected_counts` works out, without tallyd's code, what the
store must hold; each test checks every (account, type) total, every UTC hour of
every day, the `all` rollup and the order funnels against it, through the API of
a real `tallyd serve`.

The corpus is from 2013, far past the default retention of minutes and hours, so
most tests keep them forever (`--retention-hours 0 --retention-minutes 0`); one
runs with the defaults, where a day answers its total but no hours.
"""

from __future__ import annotations

import http.client
import re
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import zmq

from tests.conftest import REPO, Server, free_port, udp_port, wait_until
from tests.test_zmq import subscribed, xpub

sys.path.insert(0, str(REPO / "bench"))
import corpus

pytestmark = pytest.mark.timeout(120)

KEEP_HOURS = ("--retention-hours", "0", "--retention-minutes", "0")
# Sent last on a bus: once it is counted, everything before it was read.
SENTINEL = {"data": {"account": "zz-sentinel"}, "time": 1_378_425_600, "type": "sentinel"}

Event = dict[str, Any]
Pub = zmq.Socket[bytes]


@pytest.fixture
def bus() -> Iterator[tuple[Pub, int]]:
    """An XPUB bound on a free loopback port, as the Bootic publisher was."""
    ctx: zmq.Context[Pub] = zmq.Context()
    port = free_port()
    yield xpub(ctx, port), port
    ctx.destroy(linger=0)


def on_bus(factory: type[Server], tmp_path: Path, bus: tuple[Pub, int], *flags: str) -> Server:
    pub, port = bus
    server = factory(tmp_path, "--zmq", f"tcp://127.0.0.1:{port}", *flags).start()
    subscribed(pub)
    return server


class Reader:
    """GETs over one keep-alive connection: the checks below make thousands, and
    http.client costs a third of what httpx does per request."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def get(self, path: str) -> Any:
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, f"{path}: {r.status} {body!r}"
        return orjson.loads(body)

    def track(self, account: str, event: str, *parts: int) -> Any:
        period = "".join(f"/{p:02d}" for p in parts)
        return self.get(f"/api/stats/track/{quote(account, safe='')}/{quote(event)}{period}")


def nonzero(data: dict[str, int]) -> dict[str, int]:
    return {k: n for k, n in data.items() if n}


def rejections(server: Server) -> dict[tuple[str, str], int]:
    """Every (source, reason) of `tallyd_events_rejected_total` that is not zero."""
    text = server.get("/metrics").text
    found = re.findall(
        r'^tallyd_events_rejected_total\{source="([^"]*)",reason="([^"]*)"\} (\S+)$', text, re.M
    )
    return {(source, reason): int(float(n)) for source, reason, n in found if float(n)}


def wait_sentinels(server: Server, n: int = 1, timeout: float = 30) -> None:
    """Wait until `n` sentinels are counted: the bus was read up to the last of them."""
    read = Reader(server)
    got = wait_until(lambda: read.track("zz-sentinel", "sentinel")["total"], n, timeout)
    assert got == n, f"{got} sentinel(s) of {n} counted:\n{server.log.read_text()[-3000:]}"


def assert_counted(server: Server, evs: list[Event], *, hours: bool = True) -> None:
    """The store holds exactly what `evs` make (events without a type left out):
    every (account, type) and `all` total by year, month, day and UTC hour, and
    the order funnels by year and month.

    `hours`: hours are kept (retention 0), so each day answer holds its UTC hours;
    else (the default retention) a day of 2013 answers its total (from the month)
    with every hour zero, by design.
    """
    read = Reader(server)
    want = corpus.expected_counts(evs)
    # (account or all, type) → day of September 2013 → hour → events
    cells: dict[tuple[str, str], dict[int, Counter[int]]] = {}
    for (account, kind, hour), k in want.hours.items():
        assert (hour.year, hour.month) == (2013, 9), hour  # the corpus's four hours
        for who in (account, "all"):
            cells.setdefault((who, kind), {}).setdefault(hour.day, Counter())[hour.hour] += k
    funnels: dict[str, Counter[str]] = {}
    for ev in evs:
        if ev.get("type") == "order":
            for who in (ev["data"]["account"], "all"):
                funnels.setdefault(who, Counter())[ev["data"]["status"]] += 1

    wrong: list[str] = []

    def check(what: str, got: object, expected: object) -> None:
        if got != expected:
            wrong.append(f"{what}: got {got}, want {expected}")

    for (who, kind), by_day in sorted(cells.items()):
        n = sum(sum(h.values()) for h in by_day.values())
        answer = read.track(who, kind)
        check(f"{who}/{kind}", (answer["total"], nonzero(answer["data"])), (n, {"2013": n}))
        answer = read.track(who, kind, 2013)
        check(f"{who}/{kind}/2013", (answer["total"], nonzero(answer["data"])), (n, {"9": n}))
        answer = read.track(who, kind, 2013, 9)
        month = {str(day): sum(h.values()) for day, h in by_day.items()}
        check(f"{who}/{kind}/2013/09", (answer["total"], nonzero(answer["data"])), (n, month))
        for day, by_hour in by_day.items():
            answer = read.track(who, kind, 2013, 9, day)
            got = (answer["total"], nonzero(answer["data"]))
            if hours:
                expected = (sum(by_hour.values()), {str(h): k for h, k in by_hour.items()})
            else:
                expected = (sum(by_hour.values()), {})
            check(f"{who}/{kind}/2013/09/{day:02d}", got, expected)
    for who, statuses in sorted(funnels.items()):
        for period in ("2013", "2013/09"):
            answer = read.get(f"/api/stats/funnels/{quote(who, safe='')}/order/{period}")
            check(f"funnels {who}/order/{period}", answer["data"], dict(statuses))
    types = set(read.get("/api/stats/track")["events"]) - {SENTINEL["type"]}
    check("event types", types, set(want.by_type()))
    assert not wrong, f"{len(wrong)} wrong answer(s):\n" + "\n".join(wrong[:40])


def packed(ev: Event) -> bytes:
    """The msgpack payload of one event, as the 2013-14 bus carried it."""
    return corpus.msgpack_frames(0, evs=[ev])[0].partition(b" ")[2]


def test_zmq_json_frames(
    server_factory: type[Server], tmp_path: Path, bus: tuple[Pub, int]
) -> None:
    server = on_bus(server_factory, tmp_path, bus, *KEEP_HOURS)
    pub = bus[0]
    evs = corpus.events(3000)
    for frame in corpus.json_frames(0, evs=evs):
        pub.send(frame)
    pub.send(corpus.json_frame(SENTINEL))
    wait_sentinels(server)
    assert server.metric("tallyd_events_accepted_total", source="zmq") == len(evs) + 1
    assert rejections(server) == {}
    assert_counted(server, evs)


def test_zmq_msgpack_frames_then_a_mixed_bus(
    server_factory: type[Server], tmp_path: Path, bus: tuple[Pub, int]
) -> None:
    server = on_bus(server_factory, tmp_path, bus, *KEEP_HOURS)
    pub = bus[0]
    first = corpus.events(2000, seed=1)
    frames = corpus.msgpack_frames(0, evs=first)
    assert all(f.partition(b" ")[2][:1] == b"\x83" for f in frames)  # a map: type, time, data
    for frame in frames:
        pub.send(frame)
    pub.send(corpus.json_frame(SENTINEL))
    wait_sentinels(server)
    assert_counted(server, first)

    # The same bus then carries both encodings, alternating event by event.
    second = corpus.events(2000, seed=2)
    as_json = corpus.json_frames(0, evs=second)
    as_msgpack = corpus.msgpack_frames(0, evs=second)
    for i in range(len(second)):
        pub.send(as_json[i] if i % 2 else as_msgpack[i])
    pub.send(b"sentinel " + packed(SENTINEL))
    wait_sentinels(server, 2)
    assert server.metric("tallyd_events_accepted_total", source="zmq") == 4002
    assert rejections(server) == {}
    assert_counted(server, first + second)


def shaped(ev: Event, form: int) -> list[bytes]:
    """One event in one of the frame shapes of SPEC §4, JSON or msgpack."""
    kind, payload, mp = ev["type"].encode(), corpus.payload(ev), packed(ev)
    shapes = [
        [kind + b" " + payload],  # the Bootic publisher's frame
        [kind, payload],  # two frames
        [payload],  # bare
        [b" " + payload],  # an empty topic
        [kind + b" " + mp],
        [kind, mp],
        [mp],
        [b" " + mp],
    ]
    return shapes[form % len(shapes)]


def damaged(ev: Event) -> list[tuple[list[bytes], str]]:
    """Broken messages made from one event, each with the reason it must be rejected for."""
    kind, payload, mp = ev["type"].encode(), corpus.payload(ev), packed(ev)
    assert b'"app":"bootic_' in payload and b"bootic_" in mp
    return [
        ([kind + b" " + payload[: len(payload) // 2]], "invalid_json"),  # cut short
        ([kind, payload[:-1]], "invalid_json"),  # its last brace lost
        ([kind + b" " + payload.replace(b'"data":', b'"data"', 1)], "invalid_json"),
        ([kind + b" " + payload + b"}"], "invalid_json"),  # something after the object
        ([kind + b" " + payload.replace(b'"app":"b', b'"app":"\xff', 1)], "invalid_json"),
        ([kind + b" " + mp[: len(mp) // 2]], "invalid_msgpack"),  # cut short
        ([kind, mp[:-3]], "invalid_msgpack"),
        ([kind, mp + b"\xc1"], "invalid_msgpack"),  # 0xc1: never used by msgpack
        ([kind, mp.replace(b"bootic_", b"\xffootic_", 1)], "invalid_msgpack"),  # not UTF-8
        ([kind, payload, payload], "bad_frames"),
    ]


def test_zmq_edge_shapes_duplicates_and_damaged_frames(
    server_factory: type[Server], tmp_path: Path, bus: tuple[Pub, int]
) -> None:
    server = on_bus(server_factory, tmp_path, bus, *KEEP_HOURS)
    pub = bus[0]
    evs = corpus.events(2400, seed=3, untyped=0.02)
    untyped = [ev for ev in evs if "type" not in ev]
    assert untyped
    for i, ev in enumerate(evs):
        if "type" in ev and i % 4 == 0:
            ev["id"] = f"{ev['data']['account']}-{i}"
    with_id = [ev for ev in evs if "id" in ev]
    broken = [m for ev in evs[::300] if "type" in ev for m in damaged(ev)]
    want_rejected = Counter(("zmq", reason) for _, reason in broken)
    want_rejected["zmq", "missing_type"] = len(untyped)
    # Spread over the stream, each once.
    broken_at = dict(zip(range(7, len(evs), len(evs) // len(broken)), broken, strict=False))
    assert len(broken_at) == len(broken)
    for i, ev in enumerate(evs):
        if i in broken_at:
            pub.send_multipart(broken_at[i][0])
        if "type" not in ev:
            pub.send(corpus.json_frame(ev))  # no type, so no topic: ` {"data":...}`
            continue
        pub.send_multipart(shaped(ev, i))
        if "id" in ev:
            pub.send_multipart(shaped(ev, i + 3))  # a retry, at once, in another shape
    for i, ev in enumerate(with_id):
        pub.send_multipart(shaped(ev, i + 5))  # and again, later
    pub.send(corpus.json_frame(SENTINEL))
    wait_sentinels(server)
    log = server.log.read_text()
    assert rejections(server) == want_rejected, log[-3000:]
    assert server.metric("tallyd_events_duplicate_total") == 2 * len(with_id)
    typed = [ev for ev in evs if "type" in ev]
    assert server.metric("tallyd_events_accepted_total", source="zmq") == len(typed) + 1
    assert_counted(server, evs)
    assert server.get("/healthz").status_code == 200
    assert "Traceback" not in log


def post(server: Server, body: bytes) -> tuple[int, Any]:
    r = server.client.post("/api/events", content=body)
    return r.status_code, r.json()


def test_http_arrays_ndjson_and_a_mixed_body(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, *KEEP_HOURS).start()
    evs = corpus.events(3000, seed=4)
    arrays = corpus.http_bodies(0, 500, evs=evs[:1500])
    ndjson = corpus.http_bodies(0, 500, evs=evs[1500:], ndjson=True)
    assert arrays[0].startswith(b'[{"data":{') and ndjson[0].count(b"\n") == 500
    for body in arrays + ndjson:
        assert post(server, body) == (
            202,
            {"accepted": 500, "duplicates": 0, "rejected": 0, "errors": []},
        )

    # Good events and bad ones in one body: the good are counted, the bad named by index.
    good = corpus.events(6, seed=5)
    bad_time = {"data": {"account": "acme"}, "time": "yesterday", "type": "pageview"}
    no_account = {"data": {"app": "bootic_tracker_app"}, "time": 1_378_425_600, "type": "order"}
    for mixed, ndjson_body in ((good[:3], False), (good[3:], True)):
        docs = [mixed[0], bad_time, mixed[1], no_account, mixed[2]]
        [body] = corpus.http_bodies(0, 5, evs=docs, ndjson=ndjson_body)
        status, answer = post(server, body)
        assert status == 202, answer
        assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (3, 0, 2)
        got = [(e["index"], e["reason"]) for e in answer["errors"]]
        assert got == [(1, "bad_time"), (3, "missing_account")], answer
    assert rejections(server) == {("http", "bad_time"): 2, ("http", "missing_account"): 2}
    assert server.metric("tallyd_events_accepted_total", source="http") == 3006
    assert Reader(server).track("acme", "pageview")["total"] == 0
    assert_counted(server, evs + good)


def test_udp_bare_json_datagrams(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}", *KEEP_HOURS).start()
    evs = corpus.events(2000, seed=6)
    datagrams = [corpus.payload(ev) for ev in evs]
    assert max(len(d) for d in datagrams) <= 1024
    broken = [datagrams[0][:300], datagrams[1] + b"}"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(datagrams):
            s.sendto(d, ("127.0.0.1", port))
            if i % 200 == 199:
                time.sleep(0.02)  # a modest rate: the kernel's buffer never fills
        for d in broken:
            s.sendto(d, ("127.0.0.1", port))
    accepted = wait_until(
        lambda: server.metric("tallyd_events_accepted_total", source="udp"), len(evs)
    )
    assert accepted == len(evs), server.log.read_text()[-3000:]
    assert wait_until(lambda: sum(rejections(server).values()), 2) == 2
    assert rejections(server) == {("udp", "invalid_json"): 2}
    assert server.metric("tallyd_syslog_kernel_drops_total") == 0
    assert_counted(server, evs)


# One instant, 2013-09-05T13:01:33Z, in every form producers wrote it (JSON text).
TIME_FORMS = {
    "rfc3339-nanoseconds-offset": '"2013-09-05T09:01:33.619303604-04:00"',
    "rfc3339-utc": '"2013-09-05T13:01:33Z"',
    "offset-without-colon": '"2013-09-05T15:01:33+0200"',
    "naive-is-utc": '"2013-09-05 13:01:33"',
    "ruby": '"2013-09-05 09:04:16 -0400"',  # 13:04 UTC
    "unix-integer": "1378386093",
    "unix-float": "1378386093.5",
    "unix-exponent": "1.378386093e+09",
    "unix-as-text": '"1378386093"',
}
BAD_TIMES = ['"yesterday"', '"2013-02-30T00:00:00Z"', '"2013-09-05T25:00:00Z"']


def timed(account: str, when: str) -> bytes:
    return f'{{"data":{{"account":"{account}"}},"time":{when},"type":"timeform"}}'.encode()


def test_each_time_form_lands_in_its_utc_hour(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, *KEEP_HOURS).start()
    read = Reader(server)
    for name, when in TIME_FORMS.items():
        status, answer = post(server, timed(name, when))
        assert (status, answer["accepted"]) == (202, 1), (name, answer)
    wrong = {}
    for name in TIME_FORMS:
        minute = "4" if name == "ruby" else "1"
        got = (
            nonzero(read.track(name, "timeform", 2013, 9, 5)["data"]),
            nonzero(read.track(name, "timeform", 2013, 9, 5, 13)["data"]),
            read.track(name, "timeform")["total"],
        )
        if got != ({"13": 1}, {minute: 1}, 1):
            wrong[name] = got
    assert wrong == {}, f"(hours, minutes of hour 13, total) by time form: {wrong}"
    day = read.track("all", "timeform", 2013, 9, 5)
    assert (day["total"], nonzero(day["data"])) == (len(TIME_FORMS), {"13": len(TIME_FORMS)})

    for when in BAD_TIMES:
        status, answer = post(server, timed("bad-time", when))
        assert status == 400, (when, answer)
        assert [e["reason"] for e in answer["errors"]] == ["bad_time"], (when, answer)
    assert rejections(server) == {("http", "bad_time"): len(BAD_TIMES)}
    assert read.track("bad-time", "timeform")["total"] == 0
    assert read.track("all", "timeform")["total"] == len(TIME_FORMS)


def test_default_retention_keeps_days_months_and_all_time(
    server_factory: type[Server], tmp_path: Path, bus: tuple[Pub, int]
) -> None:
    # 2013's hours are past the default retention: day answers have no hours by design,
    # months, years and all time hold every event (docs/counting.md, Retention).
    server = on_bus(server_factory, tmp_path, bus)
    pub = bus[0]
    evs = corpus.events(3000, seed=7)
    as_json = corpus.json_frames(0, evs=evs)
    as_msgpack = corpus.msgpack_frames(0, evs=evs)
    for i in range(len(evs)):
        pub.send(as_msgpack[i] if i % 3 == 0 else as_json[i])
    pub.send(corpus.json_frame(SENTINEL))
    wait_sentinels(server)
    assert rejections(server) == {}
    assert_counted(server, evs, hours=False)
