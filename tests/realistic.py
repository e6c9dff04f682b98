"""Hypothesis strategies for events as real producers send them.

The Bootic bus carried Go's `encoding/json` of a map: keys sorted at every
level, no whitespace, `&<>` escaped as `\\u0026\\u003c\\u003e`, non-ASCII as raw
UTF-8, every number a float64, nested objects, and times as RFC 3339 with
nanoseconds and the producer's offset, Ruby's `Time#to_s`, or Unix seconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

TYPES = ["pageview", "order", "order.create", "order.update", "product.update", "request"]
ACCOUNT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=1, max_size=16)
# Times from 1970 to 2100, with an offset of up to ±14 h in whole minutes.
INSTANT = st.integers(0, 4_102_444_800 * 10**9)
OFFSET = st.integers(-14 * 60, 14 * 60)


def go_dumps(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes a map."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Outside strings JSON has none of these characters: escaping them is safe.
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()


def rfc3339(ns: int, offset_min: int, sep: str = "T", colon: bool = True) -> str:
    """Go's time.RFC3339Nano: fraction trimmed of trailing zeros, `Z` at UTC."""
    tz = timezone(timedelta(minutes=offset_min))
    dt = datetime.fromtimestamp(ns // 10**9, UTC).astimezone(tz)
    frac = f"{ns % 10**9:09d}".rstrip("0")
    text = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{frac}" if frac else "")
    if offset_min == 0 and colon:
        return text + "Z"
    sign = "-" if offset_min < 0 else "+"
    h, m = divmod(abs(offset_min), 60)
    return f"{text}{sign}{h:02d}{':' if colon else ''}{m:02d}"


def ruby(ns: int, offset_min: int) -> str:
    """Ruby's Time#to_s: `2013-09-05 09:04:16 -0400`."""
    tz = timezone(timedelta(minutes=offset_min))
    dt = datetime.fromtimestamp(ns // 10**9, UTC).astimezone(tz)
    sign = "-" if offset_min < 0 else "+"
    h, m = divmod(abs(offset_min), 60)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + f" {sign}{h:02d}{m:02d}"


@st.composite
def times(draw: st.DrawFn) -> Any:
    """A `time` value in one of the forms producers send."""
    ns, off = draw(INSTANT), draw(OFFSET)
    form = draw(st.sampled_from(["rfc3339", "space", "nocolon", "ruby", "float", "int"]))
    if form == "rfc3339":
        return rfc3339(ns, off)
    if form == "space":
        return rfc3339(ns, off, sep=" ")
    if form == "nocolon":
        return rfc3339(ns, off, colon=False)
    if form == "ruby":
        return ruby(ns, off)
    if form == "float":
        return ns / 10**9
    return ns // 10**9


TEXT = st.text(max_size=20) | st.sampled_from(["Niños", "Camión", "a&b<c>", 'q"t\\', "\u2028"])
# Go prints every number as a float64: prices, counts, versions, Unix times.
NUMBER = st.floats(-1e15, 1e15) | st.integers(-(10**15), 10**15).map(float)
SCALAR = TEXT | NUMBER | st.booleans() | st.none()
# Any JSON at all, for what must be handed to the decoder or rejected.
WILD = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
EXTRA = st.dictionaries(
    st.sampled_from(["_ts", "app", "h", "path", "r", "ref", "tt", "tz", "unq", "user", "total"])
    | st.text(max_size=4),
    SCALAR
    | st.dictionaries(st.sampled_from(["name", "os", "version"]), SCALAR, max_size=3)
    | st.lists(SCALAR, max_size=3),
    max_size=8,
)


@st.composite
def bootic_events(draw: st.DrawFn) -> dict[str, Any]:
    """A Bootic-bus event: type, data (account and more), often a time; rarely id/seq."""
    kind = draw(st.sampled_from(TYPES))
    data = draw(EXTRA)
    data["account"] = draw(ACCOUNT)
    if kind == "order":
        data["status"] = draw(st.sampled_from(["draft", "checkout", "closed"]) | SCALAR)
    event: dict[str, Any] = {"type": kind, "data": data}
    if draw(st.integers(0, 9)):
        event["time"] = draw(times())
    if not draw(st.integers(0, 4)):
        event["id"] = draw(st.text(max_size=12) | st.integers(0, 10**12))
    if not draw(st.integers(0, 4)):
        event["seq"] = draw(st.integers(1, 10**9) | st.floats(1, 1e9))
    return event


@st.composite
def flat_events(draw: st.DrawFn) -> dict[str, Any]:
    """The flat shape: event, account and properties side by side."""
    event = draw(EXTRA)
    event["event"] = draw(st.sampled_from(TYPES))
    event["account"] = draw(ACCOUNT)
    if event["event"] == "order" and draw(st.booleans()):
        event["status"] = draw(st.sampled_from(["paid", "pending"]) | SCALAR)
    if draw(st.booleans()):
        event["time"] = draw(times())
    if draw(st.booleans()):
        event["id"] = draw(st.text(max_size=12) | st.integers(0, 10**12))
    return event


EVENTS = bootic_events() | flat_events()


@st.composite
def damaged(draw: st.DrawFn, payload: bytes) -> bytes:
    """The payload, or now and then a copy cut short or with a byte replaced."""
    if not payload or draw(st.booleans()):
        return payload
    at = draw(st.integers(0, len(payload) - 1))
    if draw(st.booleans()):
        return payload[:at]
    byte = draw(st.sampled_from(b'{}[]",:0-.eE+ \\utn\x00\x7f\xc3\xa9\xed\xff'))
    return payload[:at] + bytes([byte]) + payload[at + 1 :]
