"""The hot path runs compiled in the test install, and compiled and pure Python agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import zmq

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
