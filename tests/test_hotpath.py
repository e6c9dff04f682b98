"""The hot path runs compiled in the test install, and compiled and pure Python agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

import tallyd.hotpath as compiled

SOURCE = Path(compiled.__file__).with_name("hotpath.py")


def pure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hotpath_pure", SOURCE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_installed_hot_path_is_compiled() -> None:
    # The test install builds the C extensions; benchmarks and tests run what users run.
    import tallyd.expand

    assert compiled.__file__.endswith(".so"), compiled.__file__
    assert tallyd.expand.__file__.endswith(".so"), tallyd.expand.__file__


OBJS: list[Any] = [
    {"type": "pageview", "data": {"account": "a"}, "time": 600},
    {"event": "pageview", "account": "a"},
    {"type": "pageview", "data": {"account": "unknown"}, "time": 60},
    {"type": "pageview", "data": {"account": "a"}, "time": "2013-09-05T14:03:07Z"},
    {"type": "pageview", "data": {"account": "a"}, "id": "x"},
    {"type": "order", "data": {"account": "a", "status": "paid"}},
    {"type": "pageview", "data": {"account": "a"}, "time": -5},
    {"type": "pageview", "data": {"account": "a"}, "time": True},
    [1, 2],
    "text",
]


def test_count_known_agrees() -> None:
    results = []
    for mod in (compiled, pure()):
        pending: dict[Any, int] = {}
        counted, slow = mod.count_known(
            OBJS, {"a", "pageview", "order"}, {"order": "status"}, 7, pending
        )
        results.append((counted, [i for i, _ in slow], pending))
    assert results[0] == results[1]
    counted, slow_idx, pending = results[0]
    assert counted == 2
    assert pending == {("a", "pageview", 10, None): 1, ("a", "pageview", 7, None): 1}
    assert slow_idx == [2, 3, 4, 5, 6, 7, 8, 9]


def test_receive_agrees() -> None:
    frames = [b"pv " + orjson.dumps({"type": "pv", "seq": s, "publisher": "p"}) for s in (1, 2, 5)]
    frames += [
        b'{"event": "pv", "account": "a", "time": 600}',
        b'{"event": "pv", "account": "new"}',
    ]
    frames += [b'{"bare": 1}', b"[1, 2]", b"t {bad", b"junk", b"after"]
    for mod in (compiled, pure()):
        queue = list(frames)

        def recv(flags: int, q: list[bytes] = queue) -> bytes:
            if not q:
                raise zmq.Again()
            return q.pop(0)

        out: list[Any] = []
        gaps: list[Any] = []
        seqs: dict[Any, int] = {}
        pending: dict[Any, int] = {}
        n, counted, odd = mod.receive(
            recv,
            100,
            zmq.Again,
            orjson.loads,
            orjson.JSONDecodeError,
            "BAD",
            seqs,
            gaps,
            out,
            {"a", "pv"},
            {},
            7,
            pending,
        )
        assert (n, counted, odd) == (8, 1, b"junk")
        assert pending == {("a", "pv", 10, None): 1}
        # Unknown names and other shapes go to the full path, decoded.
        assert out[3:] == [{"event": "pv", "account": "new"}, {"bare": 1}, 1, 2, "BAD"]
        assert gaps == [("p", 2, 5)] and seqs == {"p": 5}
        assert queue == [b"after"]


# -- scan: the common shape read in place, checked against orjson ----------------------

PURE = pure()

NAMES = ["type", "event", "account", "data", "time", "seq", "publisher", "id", "status", "x"]
scalars = (
    st.integers(min_value=-(10**20), max_value=10**20)
    | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8)
    | st.text(max_size=4)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
flat = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=3), scalars, max_size=6)
events = st.dictionaries(
    st.sampled_from(NAMES) | st.text(max_size=3),
    scalars | flat | st.lists(scalars, max_size=2),
    max_size=8,
)
SEPARATORS = [(",", ":"), (", ", ": "), (" ,\n", " :\t"), ("\r\n,", ":  ")]


def expected(payload: bytes) -> tuple[Any, ...] | None:
    """What scan must return for a payload it reads (by orjson and the count_one rules)."""
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict:
        return None

    def text(v: Any) -> str | None:
        return v if type(v) is str else None

    data = d.get("data")
    if type(data) is dict:
        account, event = text(data.get("account")), text(d.get("type"))
    else:
        account, event = text(d.get("account")), text(d.get("event"))
    t = d.get("time")
    if t is None:
        t = PURE.NO_TIME
    elif type(t) is not int or not 0 <= t <= PURE.MAX_TIME:
        t = PURE.BAD_TIME
    seq = d.get("seq")
    return (
        seq if type(seq) is int else None,
        text(d.get("publisher")),
        account,
        event,
        t,
        "id" not in d,
    )


def dumps(obj: Any, seps: tuple[str, str]) -> bytes:
    return json.dumps(obj, separators=seps, ensure_ascii=False).encode()


@settings(max_examples=1500, deadline=None)
@given(events, st.sampled_from(SEPARATORS), st.data())
def test_scan_agrees_with_orjson(obj: dict[str, Any], seps: tuple[str, str], data: Any) -> None:
    payload = dumps(obj, seps)
    # Now and then a damaged copy: cut short, or a byte replaced.
    if data.draw(st.booleans()) and payload:
        at = data.draw(st.integers(0, len(payload) - 1))
        if data.draw(st.booleans()):
            payload = payload[:at]
        else:
            byte = data.draw(st.sampled_from(b'{}[]",:0-.e \\x\x00\xc3'))
            payload = payload[:at] + bytes([byte]) + payload[at + 1 :]
    got = compiled.scan(payload)
    assert got == PURE.scan(payload)
    if got is not None:
        assert got == expected(payload), payload


@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["pageview", "order"]), "time": st.integers(0, 2**40)},
        optional={
            "seq": st.integers(-(10**18) + 1, 10**18 - 1),
            "publisher": st.text(alphabet="abc-1", max_size=5),
            "id": st.integers(0, 9) | st.text(alphabet="xyz", max_size=3),
        },
    ),
    st.text(alphabet="abcdefghij-_./", min_size=1, max_size=12),
    st.sampled_from(SEPARATORS),
)
def test_scan_reads_the_common_shapes(
    event: dict[str, Any], account: str, seps: tuple[str, str]
) -> None:
    bootic = {**event, "data": {"account": account, "status": "paid", "total": 12}}
    flat = {k if k != "type" else "event": v for k, v in event.items()} | {"account": account}
    for obj in (bootic, flat):
        payload = dumps(obj, seps)
        assert compiled.scan(payload) == expected(payload) != None  # noqa: E711
        assert PURE.scan(payload) == expected(payload)


def test_scan_leaves_the_rest_to_the_decoder() -> None:
    for payload in [
        b'{"type":"pv","data":{"account":"a\\u0041"}}',  # an escape
        b'{"type":"pv","data":{"account":"caf\xc3\xa9"}}',  # non-ASCII
        b'{"type":"pv","time":1.5}',
        b'{"type":"pv","time":1e3}',
        b'{"type":"pv","time":01}',
        b'{"type":"pv","seq":1234567890123456789}',  # past MAX_DIGITS
        b'{"type":"pv","type":"x"}',  # a name twice
        b'{"type":"pv","data":{"account":"a","account":"b"}}',
        b'{"type":"pv","data":{"account":"a","more":{"x":1}}}',
        b'{"type":"pv","meta":{"x":1}}',
        b'{"type":"pv","ok":true}',
        b'{"type":"pv",}',
        b'{"type":"pv"} x',
        b'[{"type":"pv"}]',
        b"",
    ]:
        assert compiled.scan(payload) is None, payload
    no_names = (None, None, None, None, PURE.NO_TIME, True)
    assert compiled.scan(b' {"data" : {} , "x": -0 }\n') == no_names
