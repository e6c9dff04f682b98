"""The per-event loops of ingest, compiled with Cython when it is available.

Plain, typed Python: the same file runs uncompiled, and `setup.py` compiles it
to a C extension when Cython and a C compiler are at hand (profiling showed
the per-event Python overhead of these loops, not JSON decoding, set ingest
speed). Everything that is not the common case is handed back to the caller.
"""

from __future__ import annotations

from typing import Any

MAX_TIME = 253402300799
MAX_PUBLISHERS = 100_000
LBRACE, LBRACKET = 123, 91  # b'{', b'['


def receive(
    recv: Any,
    limit: int,
    again: type[Exception],
    loads: Any,
    decode_error: type[Exception],
    bad_json: object,
    seq_last: dict[Any, int],
    gaps: list[tuple[Any, int, int]],
    out: list[Any],
    known: set[str],
    breakdowns: dict[str, str],
    now_minute: int,
    pending: dict[tuple[str, str, int, str | None], int],
) -> tuple[int, int, bytes | None]:
    """Receive up to `limit` ZeroMQ messages without blocking; decode them into `out`.

    A frame that is bare JSON or `"<topic> <json>"` is a whole message. Any
    other frame is returned as `odd` straight away, before the next receive,
    so the caller can read the rest of a multi-frame message. Undecodable
    payloads are appended as `bad_json`. `seq` numbers are checked per
    publisher (the `publisher` field, else the topic); gaps go to `gaps`.
    Events `count_one` can count are counted here; only the others go to `out`.
    Returns (messages, events counted here, odd frame or None).
    """
    n = 0
    counted = 0
    frame: bytes
    topic: bytes
    payload: bytes
    while n < limit:
        try:
            frame = recv(1)  # zmq.NOBLOCK
        except again:
            break
        if not frame:
            return n, counted, frame
        c = frame[0]
        if c in (LBRACE, LBRACKET):
            topic = b""
            payload = frame
        else:
            sp = frame.find(b" ")
            if sp <= 0 or len(frame) <= sp + 1 or frame[sp + 1] not in (LBRACE, LBRACKET):
                return n, counted, frame
            topic = frame[:sp]
            payload = frame[sp + 1 :]
        n += 1
        try:
            doc = loads(payload)
        except decode_error:
            out.append(bad_json)
            continue
        if type(doc) is list:
            for obj in doc:
                track_seq(obj, topic, seq_last, gaps)
                out.append(obj)
        else:
            track_seq(doc, topic, seq_last, gaps)
            if count_one(doc, known, breakdowns, now_minute, pending):
                counted += 1
            else:
                out.append(doc)
    return n, counted, None


def track_seq(
    obj: Any, topic: bytes, seq_last: dict[Any, int], gaps: list[tuple[Any, int, int]]
) -> None:
    if type(obj) is not dict:
        return
    d: dict[str, Any] = obj  # typed, so the compiled form calls the C dict API
    seq = d.get("seq")
    if type(seq) is not int:
        return
    pub = d.get("publisher")
    key: Any = pub if type(pub) is str else topic
    last = seq_last.get(key)
    if last is None:
        if len(seq_last) >= MAX_PUBLISHERS:
            seq_last.clear()
    elif seq != last + 1:
        gaps.append((key, last, seq))
    seq_last[key] = seq


def count_one(
    obj: Any,
    known: set[str],
    breakdowns: dict[str, str],
    now_minute: int,
    pending: dict[tuple[str, str, int, str | None], int],
) -> bool:
    """Count `obj` into `pending` if it needs no more checks; False leaves it to `parse`.

    That is: both names validated before (`known`), an integer or absent time,
    no id, no breakdown.
    """
    if type(obj) is not dict:
        return False
    d: dict[str, Any] = obj  # typed, so the compiled form calls the C dict API
    if "id" in d:
        return False
    raw = d.get("data")
    if type(raw) is dict:
        data: dict[str, Any] = raw
        account = data.get("account")
        event = d.get("type")
    else:
        account = d.get("account")
        event = d.get("event")
    if (
        type(account) is not str
        or type(event) is not str
        or account not in known
        or event not in known
        or event in breakdowns
    ):
        return False
    t = d.get("time")
    if t is None:
        minute = now_minute
    elif type(t) is int and 0 <= t <= MAX_TIME:
        minute = t // 60
    else:
        return False
    key = (account, event, minute, None)
    pending[key] = pending.get(key, 0) + 1
    return True


def count_known(
    objs: list[Any],
    known: set[str],
    breakdowns: dict[str, str],
    now_minute: int,
    pending: dict[tuple[str, str, int, str | None], int],
) -> tuple[int, list[tuple[int, Any]]]:
    """Count what `count_one` can; return how many, and the rest as `(index, obj)`."""
    counted = 0
    slow: list[tuple[int, Any]] = []
    i = -1
    for obj in objs:
        i += 1
        if count_one(obj, known, breakdowns, now_minute, pending):
            counted += 1
        else:
            slow.append((i, obj))
    return counted, slow
