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
# `scan`'s time when the event has none, and when it has one `count_cell` cannot take.
NO_TIME, BAD_TIME = -1, -2


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
    so the caller can read the rest of a multi-frame message. A payload of
    the common flat shape is read by `scan` without decoding it into objects;
    any other is decoded by `loads`, and an undecodable one is appended as
    `bad_json`. `seq` numbers are checked per publisher (the `publisher` field,
    else the topic); gaps go to `gaps`. Events `count_cell` can count are
    counted here; only the others go to `out`.
    Returns (messages, events counted here, odd frame or None).
    """
    n = 0
    counted = 0
    frame: bytes
    topic = b""  # the last topic, reused while frames repeat it
    while n < limit:
        try:
            frame = recv(1)  # zmq.NOBLOCK
        except again:
            break
        if not frame:
            return n, counted, frame
        size = len(frame)
        start = 0
        if frame[0] not in (LBRACE, LBRACKET):
            sp = _find_space(frame, size)
            if sp <= 0 or size <= sp + 1 or frame[sp + 1] not in (LBRACE, LBRACKET):
                return n, counted, frame
            if not _is(frame, 0, sp, topic):
                topic = frame[:sp]
            start = sp + 1
        elif topic:
            topic = b""
        n += 1
        fields = scan(frame, start)
        if fields is not None:
            seq, pub, account, event, t, plain = fields
            if seq is not None:
                next_seq(pub if pub is not None else topic, seq, seq_last, gaps)
            if plain and count_cell(account, event, t, known, breakdowns, now_minute, pending):
                counted += 1
                continue
        payload = frame[start:] if start else frame
        try:
            doc = loads(payload)
        except decode_error:
            out.append(bad_json)
            continue
        if fields is not None:
            out.append(doc)  # its seq is tracked above
        elif type(doc) is list:
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
    next_seq(pub if type(pub) is str else topic, seq, seq_last, gaps)


def next_seq(
    key: Any, seq: int, seq_last: dict[Any, int], gaps: list[tuple[Any, int, int]]
) -> None:
    """Note publisher `key`'s message number `seq`; a break goes to `gaps`."""
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
    if type(account) is not str or type(event) is not str:
        return False
    t = d.get("time")
    if t is None:
        t = NO_TIME
    elif type(t) is not int or not 0 <= t <= MAX_TIME:
        return False
    return count_cell(account, event, t, known, breakdowns, now_minute, pending)


def count_cell(
    account: str | None,
    event: str | None,
    t: int,
    known: set[str],
    breakdowns: dict[str, str],
    now_minute: int,
    pending: dict[tuple[str, str, int, str | None], int],
) -> bool:
    """Count one event at Unix time `t` (or NO_TIME: now) if both names are known
    and the event has no breakdown; False leaves it to `parse`."""
    if (
        account is None
        or event is None
        or t == BAD_TIME
        or account not in known
        or event not in known
        or event in breakdowns
    ):
        return False
    key = (account, event, now_minute if t == NO_TIME else t // 60, None)
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


# -- reading the common shape of an event without decoding it ------------------------

RBRACE, QUOTE, COLON, COMMA, MINUS, BACKSLASH = 125, 34, 58, 44, 45, 92
ZERO, NINE, DOT, LOWER_E, UPPER_E = 48, 57, 46, 101, 69
# The names `scan` reads, as bits of `seen` (a repeated one sends the frame to orjson).
K_TYPE, K_EVENT, K_ACCOUNT, K_DATA, K_TIME = 1, 2, 4, 8, 16
K_SEQ, K_PUBLISHER, K_ID, K_DATA_ACCOUNT = 32, 64, 128, 256
MAX_DIGITS = 18  # fits a signed 64-bit integer
_number = 0  # the value of the integer `_number_end` read last


def scan(
    p: bytes, start: int = 0
) -> tuple[int | None, str | None, str | None, str | None, int, bool] | None:
    """(seq, publisher, account, event, time, plain) of the JSON event p[start:], read
    in place.

    Decoding builds two dictionaries and their strings per event; a bus mostly
    carries one small shape, whose few fields can be read straight from the bytes.
    This reads a JSON object whose values are ASCII strings without escapes,
    integers, or (for `data`) one such object, checking its syntax as strictly as
    a decoder; for anything else (arrays, floats, true/false/null, escapes,
    non-ASCII text, repeated names, invalid JSON) it returns None and the caller
    decodes the payload. The fields follow `count_one` and `track_seq`:

    - seq: the `seq` integer, else None; publisher: the `publisher` string, else None;
    - account and event: `data.account` and `type` when `data` is an object, else
      `account` and `event`; None where that is not a string;
    - time: the `time` integer if in range, NO_TIME without one, BAD_TIME otherwise;
    - plain: no `id` (an event with one needs de-duplication).
    """
    n = len(p)
    i = _ws(p, start, n)
    if i >= n or p[i] != LBRACE:
        return None
    seen = 0
    depth = 1
    kind = 0
    seq: int | None = None
    publisher: str | None = None
    type_: str | None = None
    event: str | None = None
    account: str | None = None
    data_account: str | None = None
    t = NO_TIME
    data_object = False
    i = _ws(p, i + 1, n)
    if i < n and p[i] == RBRACE:
        depth = 0
        i += 1
    while depth:
        # A member: "name": value
        if i >= n or p[i] != QUOTE:
            return None
        end = _string_end(p, i + 1, n)
        if end < 0:
            return None
        kind = _name_kind(p, i + 1, end, depth)
        if kind:
            if seen & kind:
                return None
            seen |= kind
        i = _ws(p, end + 1, n)
        if i >= n or p[i] != COLON:
            return None
        i = _ws(p, i + 1, n)
        if i >= n:
            return None
        c = p[i]
        if c == QUOTE:
            end = _string_end(p, i + 1, n)
            if end < 0:
                return None
            if kind == K_TYPE:
                type_ = p[i + 1 : end].decode("ascii")
            elif kind == K_EVENT:
                event = p[i + 1 : end].decode("ascii")
            elif kind == K_ACCOUNT:
                account = p[i + 1 : end].decode("ascii")
            elif kind == K_DATA_ACCOUNT:
                data_account = p[i + 1 : end].decode("ascii")
            elif kind == K_PUBLISHER:
                publisher = p[i + 1 : end].decode("ascii")
            elif kind == K_TIME:
                t = BAD_TIME  # a date string: `parse` reads it
            i = end + 1
        elif c == MINUS or ZERO <= c <= NINE:
            end = _number_end(p, i, n)
            if end < 0:
                return None
            if kind in (K_TIME, K_SEQ):
                v = _number
                if kind == K_SEQ:
                    seq = v
                elif 0 <= v <= MAX_TIME:
                    t = v
                else:
                    t = BAD_TIME
            i = end
        elif c == LBRACE and kind == K_DATA:
            data_object = True
            depth = 2
            i = _ws(p, i + 1, n)
            if i < n and p[i] == RBRACE:
                depth = 1
                i += 1
            else:
                continue
        else:
            return None
        # After a value: more members, or the end of one or both objects.
        while True:
            i = _ws(p, i, n)
            if i >= n:
                return None
            if p[i] == COMMA:
                i = _ws(p, i + 1, n)
                break
            if p[i] != RBRACE:
                return None
            i += 1
            depth -= 1
            if depth == 0:
                break
    if _ws(p, i, n) != n:
        return None
    if data_object:
        account, event = data_account, type_
    return seq, publisher, account, event, t, not seen & K_ID


def _find_space(p: bytes, n: int) -> int:
    """The index of the first space in p[:n], or -1."""
    for i in range(n):
        if p[i] == 32:
            return i
    return -1


def _ws(p: bytes, i: int, n: int) -> int:
    """The index of the first byte at or after `i` that is not JSON whitespace."""
    while i < n:
        c = p[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


def _string_end(p: bytes, i: int, n: int) -> int:
    """The index of the quote closing a string that starts at `i`, or -1 when the
    string holds an escape, a control or a non-ASCII byte (or never ends)."""
    while i < n:
        c = p[i]
        if c == QUOTE:
            return i
        if c == BACKSLASH or c < 32 or c >= 128:
            return -1
        i += 1
    return -1


def _number_end(p: bytes, i: int, n: int) -> int:
    """The end of a JSON integer starting at `i`, its value left in `_number`; -1 for
    a fraction, an exponent, a leading zero, more than MAX_DIGITS digits or no number."""
    global _number
    negative = p[i] == MINUS
    if negative:
        i += 1
    if i >= n or not ZERO <= p[i] <= NINE:
        return -1
    v = 0
    if p[i] == ZERO:
        i += 1
        if i < n and ZERO <= p[i] <= NINE:
            return -1
    else:
        start = i
        while i < n and ZERO <= p[i] <= NINE:
            v = v * 10 + (p[i] - ZERO)
            i += 1
            if i - start > MAX_DIGITS:
                return -1
    if i < n and (p[i] == DOT or p[i] == LOWER_E or p[i] == UPPER_E):
        return -1
    _number = -v if negative else v
    return i


def _name_kind(p: bytes, start: int, end: int, depth: int) -> int:
    """Which of the names `scan` reads p[start:end] is (a K_ bit), or 0."""
    size = end - start
    if depth == 2:
        return K_DATA_ACCOUNT if _is(p, start, size, b"account") else 0
    if size == 4:
        if _is(p, start, size, b"type"):
            return K_TYPE
        if _is(p, start, size, b"time"):
            return K_TIME
        if _is(p, start, size, b"data"):
            return K_DATA
    elif size == 7:
        return K_ACCOUNT if _is(p, start, size, b"account") else 0
    elif size == 5:
        return K_EVENT if _is(p, start, size, b"event") else 0
    elif size == 3:
        return K_SEQ if _is(p, start, size, b"seq") else 0
    elif size == 9:
        return K_PUBLISHER if _is(p, start, size, b"publisher") else 0
    elif size == 2:
        return K_ID if _is(p, start, size, b"id") else 0
    return 0


def _is(p: bytes, start: int, size: int, name: bytes) -> bool:
    if size != len(name):
        return False
    for j in range(size):  # noqa: SIM110 - compiles to a C loop; all() would be a generator
        if p[start + j] != name[j]:
            return False
    return True
