"""The hot path runs compiled in the test install; compiled and pure Python agree;
and whatever it counts, the full parser (orjson + `events.parse`) counts the same."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import orjson
import pytest
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tallyd.hotpath as compiled
from tallyd.events import (
    NEW_NAME_LIMIT,
    Event,
    Rejected,
    check_name,
    parse,
    parse_many,
    parse_time,
)
from tallyd.ingest.http import decode
from tallyd.rules import reserved
from tallyd.web import HTTPError
from tests.realistic import ACCOUNT, EVENTS, WILD, damaged, go_dumps, rfc3339, ruby, times

SOURCE = Path(compiled.__file__).with_name("hotpath.py")
NOW = 1_764_694_800.0
NOW_MINUTE = int(NOW // 60)
BREAKDOWNS = {"order": "status"}


def pure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hotpath_pure", SOURCE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PURE = pure()
MODULES = [compiled, PURE]


def test_installed_hot_path_is_compiled() -> None:
    # The test install builds the C extensions; benchmarks and tests run what users run.
    import tallyd.expand

    assert compiled.__file__.endswith(".so"), compiled.__file__
    assert tallyd.expand.__file__.endswith(".so"), tallyd.expand.__file__


def valid_names(obj: Any) -> set[str]:
    """The names in an event that the full parser would accept (what `known` may hold)."""
    names = set()
    if type(obj) is dict:
        data = obj.get("data")
        for v in (obj.get("type"), obj.get("event"), obj.get("account")) + (
            (data.get("account"),) if type(data) is dict else ()
        ):
            with contextlib.suppress(Rejected):
                names.add(check_name(v, "x"))
    return {n for n in names if not reserved(n)}


def full(payload: bytes) -> Event | Rejected | None:
    """What the full path makes of a payload: an event, a rejection, or None (not JSON)."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    try:
        return parse(obj, BREAKDOWNS, NOW)
    except Rejected as err:
        return err


def fast(mod: ModuleType, payload: bytes, known: set[str]) -> tuple[int, dict[Any, int], list[Any]]:
    cells: dict[Any, int] = {}
    ids: list[Any] = []
    r = mod.Counter(known, BREAKDOWNS, NOW_MINUTE, cells, ids).event(payload)
    return r, cells, ids


def check_agrees(payload: bytes, known: set[str]) -> int:
    """Both forms of the fast path give the same answer, and it is the full path's."""
    got = fast(compiled, payload, known)
    assert got == fast(PURE, payload, known), payload
    r, cells, ids = got
    want = full(payload)
    if r == PURE.COUNTED:
        assert isinstance(want, tuple) and want[4] is None, (payload, want)
        assert cells == {want[:4]: 1} and ids == [], payload
    elif r == PURE.QUEUED:
        assert isinstance(want, tuple) and want[4] is not None, (payload, want)
        assert ids == [want] and cells == {}, payload
    else:
        assert r == PURE.SLOW and cells == {} and ids == []
    return int(r)


# Bootic's own shapes, from its public code: a tracker pageview, a test-client order.
PAGEVIEW = (
    b'{"data":{"_ts":"1378386066861","account":"sajalata","app":"bootic_tracker_app",'
    b'"browser":{"name":"Safari","os":"CPU iPhone OS 6_1_4 like Mac OS X","version":"6.0"},'
    b'"h":"sajalata.bootic.net","path":"/categories/ropa","r":"http://sajalata.bootic.net/'
    b'categories/ropa?page=2\\u0026utm_source=facebook","ref":"",'
    b'"tt":"Ropa | Sajalata Ni\xc3\xb1os",'
    b'"tz":"-3","unq":"1","user":"1378386066861.4434"},'
    b'"time":"2013-09-05T09:01:33.619303604-04:00","type":"pageview"}'
)
ORDER = (
    b'{"data":{"account":"sajalata","browser":{"version":6},"items":[{"price":2.216606e+06,'
    b'"qty":1}],"status":"checkout","total":2.216606e+06},"time":"2013-09-05 09:04:16 -0400",'
    b'"type":"order"}'
)
UNIX = (
    b'{"data":{"account":"sajalata","load":[0.5,1e-07]},"time":1.378387063e+09,"type":"load_avg"}'
)


@pytest.mark.parametrize("payload", [PAGEVIEW, ORDER, UNIX])
def test_real_shapes_go_fast(payload: bytes) -> None:
    known = {"sajalata", "pageview", "order", "load_avg"}
    assert check_agrees(payload, known) == PURE.COUNTED
    # ... and an id sends it to de-duplication, still without decoding.
    with_id = payload[:-1] + b',"id":"e-81f3"}'
    assert check_agrees(with_id, known) == PURE.QUEUED


def test_a_null_data_account_is_an_absent_one() -> None:
    # As a null `event` is: the flat shape's `account` counts, in place or decoded.
    payload = b'{"type":"pv","account":"a","data":{"account":null,"tz":"-3"},"time":600}'
    assert full(payload) == ("a", "pv", 10, None, None)
    assert check_agrees(payload, {"a", "pv"}) == PURE.COUNTED
    for mod in MODULES:
        cells: dict[Any, int] = {}
        c = mod.Counter({"a", "pv"}, BREAKDOWNS, NOW_MINUTE, cells, [])
        assert c.count_one(orjson.loads(payload)) == PURE.COUNTED
        assert cells == {("a", "pv", 10, None): 1}
    # A data.account that is there but not a name is still refused.
    assert isinstance(full(payload.replace(b"null", b'""')), Rejected)


def test_order_is_counted_with_its_status_in_the_producers_hour() -> None:
    _, cells, _ = fast(compiled, ORDER, {"sajalata", "order"})
    # 09:04 at -04:00 is 13:04 UTC.
    assert cells == {("sajalata", "order", 1_378_386_240 // 60, "checkout"): 1}


@settings(max_examples=1500, deadline=None)
@given(EVENTS | st.dictionaries(st.sampled_from(["type", "data", "time", "id"]), WILD), st.data())
@example({"type": "pageview", "data": {"account": "a"}, "time": "2013-09-05T09:01:33Z"}, None)
def test_fast_path_agrees_with_the_full_parser(obj: dict[str, Any], data: Any) -> None:
    payload = go_dumps(obj)
    if data is not None:
        payload = data.draw(damaged(payload))
    check_agrees(payload, valid_names(obj))


def plain(v: object) -> bool:
    """Text Go writes as is: printable ASCII without `&<>`, quotes or backslashes."""
    return type(v) is str and v.isascii() and v.isprintable() and not set(v) & set('&<>"\\')


@settings(max_examples=500, deadline=None)
@given(EVENTS)
def test_every_common_time_form_is_read_in_place(obj: dict[str, Any]) -> None:
    # An event whose account, type and status are plain text, with an RFC 3339, Ruby
    # or numeric time and no id, needs nothing from the full parser: it never goes slow.
    data = obj["data"] if type(obj.get("data")) is dict and "account" in obj["data"] else obj
    kind = obj.get("type", obj.get("event"))
    status = data.get("status") if kind == "order" else None
    if "id" in obj or not plain(kind) or not plain(data.get("account")):
        return
    if status is not None and not plain(status):
        return
    payload = go_dumps(obj)
    want = full(payload)
    if isinstance(want, tuple):
        assert check_agrees(payload, valid_names(obj)) == PURE.COUNTED, payload
    else:
        assert isinstance(want, Rejected), want
        assert want.reason in ("bad_time", "too_long", "reserved_account"), want


@settings(max_examples=1000, deadline=None)
@given(times() | st.text(alphabet="0123456789-+:TZ .e", max_size=32))
@example("2013-09-05T09:01:33.619303604-04:00")
@example("2013-02-29T00:00:00Z")
@example("2012-02-29 23:59:59 +0000")
@example("9999-12-31T23:59:59Z")
@example("1970-01-01T00:00:00+00:01")
def test_time_in_place_agrees_with_parse_time(value: Any) -> None:
    text = value if type(value) is str else str(value)
    got = compiled.time_minute(text.encode())
    assert got == PURE.time_minute(text.encode())
    if got != PURE.BAD_TIME:
        assert got == int(parse_time(text) // 60), text


@given(st.integers(0, 253_370_000_000 * 10**9), st.integers(-23 * 60, 23 * 60))
def test_time_in_place_reads_rfc3339_and_ruby(ns: int, offset: int) -> None:
    expected = ns // 10**9 // 60
    for text in (rfc3339(ns, offset), rfc3339(ns, offset, " ", False), ruby(ns, offset)):
        if not text[:4] >= "1970" or ns // 10**9 >= 253402300799:
            continue
        assert compiled.time_minute(text.encode()) == expected, text


@pytest.mark.parametrize(
    "text",
    [
        "2013-09-05",
        "2013-09-05T24:00:00Z",
        "2013-09-05T09:01:60Z",
        "2013-09-05T09:01:33,5Z",
        "2013-09-05T09:01:33.1234567891Z",
        "2013-09-05T09:01:33+24:00",
        "2013-09-05T09:01:33 -0400",
        "2013-09-05 09:01:33.5 -0400",
        "1969-12-31T23:59:59Z",
        "\uff12013-09-05T09:01:33Z",
    ],
)
def test_time_in_place_leaves_the_rest_to_parse_time(text: str) -> None:
    assert compiled.time_minute(text.encode()) == PURE.BAD_TIME


def test_known_names_only() -> None:
    # A name the full parser never validated is never counted by the fast path.
    assert check_agrees(PAGEVIEW, {"pageview"}) == PURE.SLOW
    assert check_agrees(PAGEVIEW.replace(b'"sajalata"', b'"all"', 1), {"all", "pageview"}) == 0


def test_rollup_names_never_become_known() -> None:
    # `owner/*` is a valid event type but a reserved account: the full parser keeps it
    # out of `known`, so the fast path leaves an account `a/*` to the full parser too.
    known: set[str] = set()
    cells, _, rejected = parse_many(
        [(0, {"event": "a/*", "account": "acme"}), (1, {"event": "hit", "account": "a/*"})],
        {},
        NOW,
        known,
    )
    assert cells and [r.reason for _, r in rejected] == ["reserved_account"]
    assert known == {"acme"}
    reserved_account = PAGEVIEW.replace(b'"sajalata"', b'"a/*"', 1)
    assert check_agrees(reserved_account, known | {"pageview"}) == PURE.SLOW


# -- bodies: read in place or decoded whole, the same events counted either way -----------


def body_reference(body: bytes) -> list[Event | Rejected] | None:
    try:
        items = decode(body)
    except HTTPError:
        return None
    out: list[Event | Rejected] = []
    for obj in items:
        if type(obj) is Rejected:
            out.append(obj)
            continue
        try:
            out.append(parse(obj, BREAKDOWNS, NOW))
        except Rejected as err:
            out.append(err)
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=6), st.sampled_from(["array", "ndjson"]), st.data())
def test_bodies_agree_with_decoding(objs: list[dict[str, Any]], form: str, data: Any) -> None:
    parts = [go_dumps(o) for o in objs]
    body = b"[" + b",".join(parts) + b"]" if form == "array" else b"\n".join(parts) + b"\n"
    body = data.draw(damaged(body))
    known = set().union(*(valid_names(o) for o in objs))
    results = []
    for mod in MODULES:
        cells: dict[Any, int] = {}
        ids: list[Any] = []
        slow: list[tuple[int, bytes]] = []
        n = mod.count_body(mod.Counter(set(known), BREAKDOWNS, NOW_MINUTE, cells, ids), body, slow)
        results.append((n, cells, ids, slow))
    assert results[0] == results[1]
    n, cells, ids, slow = results[0]
    want = body_reference(body)
    if n < 0:
        return  # decoded whole: the reference path itself
    assert want is not None and n == len(want), body
    got_cells: dict[Any, int] = dict(cells)
    got_ids = list(ids)
    slow_idx = {i for i, _ in slow}
    for i, item in slow:
        ev = full(item)
        same = ev == want[i] or (isinstance(ev, Rejected) and ev.reason == want[i].reason)  # type: ignore[union-attr]
        assert ev is None or same
    fast_want: dict[Any, int] = {}
    ids_want = []
    for i, ev in enumerate(want):
        if i in slow_idx:
            continue
        assert isinstance(ev, tuple), (i, ev, body)
        if ev[4] is None:
            fast_want[ev[:4]] = fast_want.get(ev[:4], 0) + 1
        else:
            ids_want.append(ev)
    assert got_cells == fast_want and got_ids == ids_want


# Names the full parser refuses, or holds apart (rollups), beside ordinary ones.
ODD_NAMES = st.sampled_from(
    ["all", "acme/*", "acme/site", "a\x7fb", "n" * 200, "n" * 201, "", "Niños", 'q"t', "order"]
)
ODD_EVENTS = st.fixed_dictionaries(
    {"event": ODD_NAMES, "account": ODD_NAMES | ACCOUNT, "time": st.just(1_378_389_787)}
)


def new_names(ev: Event, known: set[str]) -> set[str]:
    """The names of a valid event the limit on new names holds it to."""
    account, event = ev[0], ev[1]
    return {account} - known | ({event} - known if not reserved(event) else set())


@settings(max_examples=400, deadline=None)
@given(
    st.lists(EVENTS | ODD_EVENTS, min_size=1, max_size=6),
    st.sampled_from(["array", "ndjson"]),
    st.integers(1, 4),
    st.data(),
)
def test_past_the_new_name_limit_the_fast_path_refuses_only_what_the_full_parser_does(
    objs: list[dict[str, Any]], form: str, room: int, data: Any
) -> None:
    parts = [go_dumps(o) for o in objs]
    body = b"[" + b",".join(parts) + b"]" if form == "array" else b"\n".join(parts) + b"\n"
    body = data.draw(damaged(body))
    names = sorted(set().union(*(valid_names(o) for o in objs)))
    known = data.draw(st.sets(st.sampled_from(names))) if names else set()
    got = {}
    for new_room in (-1, 0, room):
        results = []
        for mod in MODULES:
            c = mod.Counter(set(known), BREAKDOWNS, NOW_MINUTE, {}, [], new_room=new_room)
            slow: list[tuple[int, bytes]] = []
            n = mod.count_body(c, body, slow)
            results.append((n, c.cells, c.ids, {i for i, _ in slow}, set(c.refused)))
        assert results[0] == results[1]
        got[new_room] = results[0]
    n, cells, ids, open_slow, none = got[-1]
    assert none == set()
    for new_room in (0, room):
        # What is counted is the same; what is refused would otherwise have gone slow.
        _, room_cells, room_ids, slow_idx, refused = got[new_room]
        assert (room_cells, room_ids) == (cells, ids)
        assert slow_idx | refused == open_slow and not slow_idx & refused
    if n < 0:
        return  # decoded whole: the full path's
    # Past the limit (no new name admitted), the full parser refuses each of them too.
    items = list(enumerate(decode(body)))
    _, _, rejected = parse_many(items, BREAKDOWNS, NOW, set(known), lambda name: False)
    want = {i for i, err in rejected if err is NEW_NAME_LIMIT}
    refused_none, refused_some = got[0][4], got[room][4]
    assert refused_none <= want, body
    assert want - refused_none <= got[0][3]
    # With room for some, the events whose new names fit, in the body's order, are
    # left to the full parser (which admits them); each refused one had a name past it.
    assert refused_some <= refused_none
    events = {i: parse(obj, BREAKDOWNS, NOW) for i, obj in items if i in refused_none}
    fitted = set().union(*(new_names(events[i], known) for i in refused_none - refused_some))
    assert len(fitted) <= room
    assert all(not new_names(events[i], known) <= fitted for i in refused_some)


def test_body_forms() -> None:
    known = {"sajalata", "pageview", "order", "load_avg"}
    for body, n, slow_idx in [
        (PAGEVIEW, 1, []),
        (b"[" + PAGEVIEW + b" ,\n" + ORDER + b"]", 2, []),
        (PAGEVIEW + b"\r\n\n" + UNIX + b"\n{oops\n" + b'{"type":"x","data":{}}', 4, [2, 3]),
        (b'[1, {"a": [true, null]}, ' + ORDER + b"]", 3, [0, 1]),
        (b"[]", -1, []),
        (b'[{"type":"pageview",}]', -1, []),
        (b"[" + PAGEVIEW + b"] x", -1, []),
        (b'"text"', -1, []),
    ]:
        slow: list[tuple[int, bytes]] = []
        c = compiled.Counter(set(known), BREAKDOWNS, NOW_MINUTE, {}, [])
        assert compiled.count_body(c, body, slow) == n, body
        assert [i for i, _ in slow] == slow_idx, body


# -- ZeroMQ frames: JSON read in place, msgpack decoded, everything else handed back ------


def test_receive_agrees() -> None:
    frames = [b"pv " + orjson.dumps({"type": "pv", "seq": s, "publisher": "p"}) for s in (1, 2, 5)]
    frames += [
        b'{"event": "pv", "account": "a", "time": 600}',
        b'{"event": "pv", "account": "new"}',
        b"pv " + msgpack.packb({"type": "pv", "data": {"account": "a"}, "time": 1.2e3}),
        msgpack.packb({"event": "pv", "account": "a", "time": "1970-01-01T00:20:00Z"}),
        b" " + orjson.dumps({"type": "pv", "data": {"account": "a"}, "time": 600}),
        b"pv " + PAGEVIEW.replace(b"sajalata", b"a").replace(b"pageview", b"pv"),
        b"pv \x81\xa1x",  # cut short
    ]
    frames += [b'{"bare": 1}', b"[1, 2]", b"t {bad", b"junk", b"after"]
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
        counter = mod.Counter({"a", "pv"}, {}, 7, pending, [])
        n, counted, odd = mod.receive(
            counter, recv, 100, zmq.Again, orjson.loads, orjson.JSONDecodeError,
            msgpack.unpackb, "BAD", "BADMP", seqs, gaps, out,
        )  # fmt: skip
        assert (n, counted, odd) == (13, 5, b"junk")
        assert pending == {
            ("a", "pv", 10, None): 2,
            ("a", "pv", 20, None): 2,
            ("a", "pv", 22973101, None): 1,
        }
        # Unknown names and other shapes go to the full path, decoded.
        assert out[3:] == [{"event": "pv", "account": "new"}, "BADMP", {"bare": 1}, 1, 2, "BAD"]
        assert gaps == [("p", 2, 5)] and seqs == {"p": 5}
        assert queue == [b"after"]


def test_counter_count_one_agrees_with_parse() -> None:
    known = {"sajalata", "pageview", "order", "load_avg"}
    for payload in (PAGEVIEW, ORDER, UNIX):
        obj = orjson.loads(payload)
        for mod in MODULES:
            cells: dict[Any, int] = {}
            c = mod.Counter(known, BREAKDOWNS, NOW_MINUTE, cells, [])
            assert c.count_one(obj) == PURE.COUNTED
            ev = parse(obj, BREAKDOWNS, NOW)
            assert cells == {ev[:4]: 1}
