"""The per-event loops of ingest, compiled with Cython when it is available.

Plain, typed Python: the same file runs uncompiled, and `setup.py` compiles it
to a C extension when Cython and a C compiler are at hand (profiling showed
the per-event Python overhead of these loops, not JSON decoding, set ingest
speed). Everything that is not the common case is handed back to the caller.

Real producers send events like the Bootic bus's: Go's JSON of a map with
nested objects, escapes, floats and RFC 3339 times with offsets. `Counter`
reads such an event straight from its bytes — the few members it needs
(`type`, `data.account`, `time`, `id`, the breakdown property, `seq`,
`publisher`) are taken in place, everything else is skipped while its syntax
is still checked as strictly as a decoder would. Whatever it is not sure
about goes to the decoder and the full parser (`events.parse`); the rules
both follow are in `rules`, and the tests hold the two to the same answers.
"""

from __future__ import annotations

from typing import Any

from orjson import loads

from tallyd import rules

MAX_TIME = rules.MAX_TIME
MAX_NAME = rules.MAX_NAME
ROLLUP = rules.ROLLUP
ROLLUP_BYTES = rules.ROLLUP.encode()
PREFIX_BYTES = rules.PREFIX_ROLLUP.encode()
MAX_PUBLISHERS = 100_000
MAX_DEPTH = 64  # deeper documents go to the decoder, which knows its own limit
# What `Counter` did with an event (SKIPPED: another shard's, see `tallyd.shard`;
# REFUSED: valid, but with a name new past the limit on new names, `new_room`).
SLOW, COUNTED, QUEUED, SKIPPED, REFUSED = 0, 1, 2, 3, 4
# An event's minute when it has no time, and when it has one the fast path cannot read.
NO_TIME, BAD_TIME = -1, -2

LBRACE, RBRACE, LBRACKET, RBRACKET, QUOTE, COLON, COMMA = 123, 125, 91, 93, 34, 58, 44
MINUS, PLUS, BACKSLASH, SPACE, DOT, LOWER_E, UPPER_E = 45, 43, 92, 32, 46, 101, 69
ZERO, NINE, UPPER_T, UPPER_Z = 48, 57, 84, 90
LOWER_T, LOWER_F, LOWER_N, LOWER_U = 116, 102, 110, 117
# The bytes a JSON string holds as they are: printable ASCII but the quote and backslash.
_PLAIN = bytes(32 <= c < 128 and c not in (QUOTE, BACKSLASH) for c in range(256))
_PLAIN_T = _PLAIN  # compiled: a C pointer into it
MAX_DIGITS = 18  # an integer that fits a signed 64-bit integer
MAX_FLOAT_DIGITS = 300  # digits before the point, exponent included: never infinity
# The names `_read` takes, as bits of a `seen` mask (a repeated one goes to the decoder).
K_TYPE, K_EVENT, K_ACCOUNT, K_DATA, K_TIME = 1, 2, 4, 8, 16
K_SEQ, K_PUBLISHER, K_ID, K_PROP = 32, 64, 128, 256

# What `_read` found in the event it read last (module state, C globals when compiled).
_number = 0  # the value of the number `_number_end` read last, when `_integer`
_integer = False
_seq: Any = None
_publisher: Any = None
_minute = NO_TIME
_eid: Any = None
_bval: Any = None
_kind = 0  # which name `_member` read last
_acc_s = _acc_e = _ev_s = _ev_e = -1  # where `_read` found the account and event
# A breakdown value the full parser must judge (a number, non-ASCII text, ...).
_OTHER: Any = object()


class Counter:
    """Counts the events that need no more checks into `cells`, and queues those
    with an `id` in `ids` for de-duplication; the rest are the caller's.

    `known` holds the names the full parser has validated: an event whose account
    and type are both known needs no more checks of them. `now_minute` dates
    events without a time. `coarse` maps an event's minute to the one it is
    counted at (see `Expander.coarse_minute`), filled by `coarsen` on a miss.
    `names` caches known names by their bytes (see `_known`). With a `shard`
    (`tallyd.shard.Shard`), events of accounts it does not own are SKIPPED.

    `new_room`: how many new names the limit on them (`limits.NewNames`) admits
    now, -1 for no limit. Events that are valid but for names `known` lacks go to
    the full parser, which admits their names, while their distinct new names fit
    in it; past it such an event is REFUSED, as the full parser would refuse it,
    without decoding it: a flood of new accounts costs a scan of its bytes. Its
    index goes to `refused`.
    """

    def __init__(
        self,
        known: set[str],
        breakdowns: dict[str, str],
        now_minute: int,
        cells: dict[tuple[str, str, int, str | None], int],
        ids: list[tuple[str, str, int, str | None, str | None]],
        coarse: dict[int, int] | None = None,
        coarsen: Any = None,
        names: NameCache | None = None,
        shard: Any = None,
        new_room: int = -1,
    ) -> None:
        self.known = known
        self.breakdowns = breakdowns
        self.now_minute = now_minute
        self.cells = cells
        self.ids = ids
        self.coarse = coarse
        self.coarsen = coarsen
        # Names seen before (see `_known`); it must serve this `known` set only.
        cache = NameCache() if names is None else names
        self._name_bytes = cache.bytes
        self._name_text = cache.text
        # One breakdown property is read in place; with several, those events go slow.
        props = set(breakdowns.values())
        prop = props.pop() if len(props) == 1 else ""
        self.prop = prop
        self.prop_name = b"" if prop in READ_NAMES else prop.encode()
        self.shard = shard
        self.owned: dict[str, bool] = {} if shard is None else shard.memo
        self.skipped = 0
        self.new_room = new_room
        self.refused: list[int] = []
        # The new names of the events left to the full parser under `new_room`.
        self._new: set[str] = set()

    def event(self, p: bytes, start: int = 0) -> int:
        """Count the JSON event p[start:] (SLOW, COUNTED or QUEUED)."""
        n = len(p)
        end = _read(p, _ws(p, start, n), n, self.prop_name)
        if end < 0 or _ws(p, end, n) != n:
            return SLOW
        return self._take(p)

    def _take(self, p: bytes) -> int:
        """Count the event `_read` read last from `p`, if it needs no more checks."""
        if _acc_s < 0 or _ev_s < 0 or _minute == BAD_TIME:
            return SLOW
        account = self._known(p, _acc_s, _acc_e)
        event = self._known(p, _ev_s, _ev_e)
        if account is None or event is None:
            if self.new_room >= 0 and self._new_past_limit(p, account is None, event is None):
                return REFUSED
            return SLOW
        return self._count(account, event)

    def _new_past_limit(self, p: bytes, new_account: bool, new_event: bool) -> bool:
        """Whether the event `_read` read last, valid but for its new names, is past
        `new_room`: both names valid, the account not a rollup's, and a new name that
        is not a rollup's event (those are never held to the limit) and does not fit.
        Names that fit are left to the full parser, and taken from the room."""
        if not _valid_name(p, _acc_s, _acc_e) or not _valid_name(p, _ev_s, _ev_e):
            return False
        if new_account and _is_rollup(p, _acc_s, _acc_e):
            return False  # reserved: the full parser says so
        new_event = new_event and not _is_rollup(p, _ev_s, _ev_e)
        if not new_account and not new_event:
            return False
        if self.new_room == 0 and not self._new:
            return True  # a flood past the limit: nothing to decode
        fresh = 0
        account = event = None
        if new_account:
            account = p[_acc_s:_acc_e].decode("ascii")
            if account not in self._new:
                fresh += 1
        if new_event:
            event = p[_ev_s:_ev_e].decode("ascii")
            if event not in self._new and event != account:
                fresh += 1
        if fresh > self.new_room:
            return True
        self.new_room -= fresh
        if account is not None:
            self._new.add(account)
        if event is not None:
            self._new.add(event)
        return False

    def _known(self, p: bytes, start: int, end: int) -> str | None:
        """The name p[start:end] if `known` holds it, else None.

        A small cache keyed by the name's bytes hands back the very string object
        seen before: no decoding, and its hash is already worked out for the set
        and the cells' keys. Only known names enter it (and a name, once valid,
        stays valid), so a hit needs no more checks.
        """
        h = FNV_BASIS  # FNV-1a, 32 bits
        for j in range(start, end):
            h = ((h ^ p[j]) * FNV_PRIME) & MASK32
        slot = h & (NAME_SLOTS - 1)
        cached = self._name_bytes[slot]
        if cached is not None and _is(p, start, end - start, cached):
            return self._name_text[slot]
        text = p[start:end].decode("ascii")
        if text not in self.known or text == ROLLUP:
            return None
        self._name_bytes[slot] = p[start:end]
        self._name_text[slot] = text
        return text

    def _count(self, account: str, event: str) -> int:
        """Count the event `_read` or `count_one` read last, by the names given."""
        if self.shard is not None:
            # The account's string is the cached object `_known` handed back: its
            # hash is worked out already, so the memo costs one dict lookup.
            mine = self.owned.get(account)
            if mine is None:
                mine = self.shard.owns(account)
            if not mine:
                self.skipped += 1
                return SKIPPED
        minute = _minute
        bval = None
        breakdowns = self.breakdowns
        if breakdowns and event in breakdowns:
            if breakdowns[event] != self.prop or not self.prop_name or _bval is _OTHER:
                return SLOW
            bval = _bval
        if minute == NO_TIME:
            minute = self.now_minute
        elif self.coarse is not None:
            # History past the minute (or hour) retention is counted at its hour's
            # (or day's) first minute: one cell where there would be sixty.
            at = self.coarse.get(minute)
            if at is None:
                at = self.coarse[minute] = self.coarsen(minute)
            minute = at
        key = (account, event, minute, bval)
        if _eid is not None:
            self.ids.append((account, event, minute, bval, _eid))
            return QUEUED
        cells = self.cells
        cells[key] = cells.get(key, 0) + 1
        return COUNTED

    def count_one(self, obj: Any) -> int:
        """Count a decoded event (SLOW, COUNTED or QUEUED), by the same rules."""
        global _minute, _eid, _bval
        if type(obj) is not dict:
            return SLOW
        d: dict[str, Any] = obj  # typed, so the compiled form calls the C dict API
        raw = d.get("data")
        if type(raw) is dict and raw.get("account") is not None:
            src: dict[str, Any] = raw
            account = src["account"]
            event = d.get("type")
            if event is None:
                event = d.get("event")
        else:
            src = d
            account = d.get("account")
            event = d.get("event")
            if event is None:
                event = d.get("type")
        if type(account) is not str or type(event) is not str:
            return SLOW
        known = self.known
        if account not in known or event not in known or account == ROLLUP:
            return SLOW
        t = d.get("time")
        if t is None:
            _minute = NO_TIME
        elif type(t) is int:
            _minute = t // 60 if 0 <= t <= MAX_TIME else BAD_TIME
        elif type(t) is float:
            _minute = int(t // 60) if 0.0 <= t <= MAX_TIME else BAD_TIME
        elif type(t) is str and t.isascii():
            b = t.encode("ascii")
            _minute = _time_minute(b, 0, len(b))
        else:
            return SLOW
        if _minute == BAD_TIME:
            # Out of range, or a form only the full parser reads: it decides, and says why.
            return SLOW
        _bval = None
        prop = self.prop
        if prop and prop in src:
            v = src[prop]
            if type(v) is str and len(v) <= MAX_NAME and v.isascii() and v.isprintable():
                _bval = v
            elif v is not None:
                _bval = _OTHER
        eid = d.get("id")
        if eid is None or eid == "":
            _eid = None
        elif type(eid) is str and len(eid) <= MAX_NAME:
            _eid = eid
        elif type(eid) is int:
            _eid = str(eid)
        else:
            return SLOW
        return self._count(account, event)


class NameCache:
    """The slots of `Counter._known`'s cache, for the Counters of one `known` set:
    a name once valid stays valid, so what one Counter learnt holds for the next."""

    def __init__(self) -> None:
        self.bytes: list[bytes | None] = [None] * NAME_SLOTS
        self.text: list[str | None] = [None] * NAME_SLOTS


NAME_SLOTS = 4096  # a power of two
FNV_BASIS, FNV_PRIME, MASK32 = 2166136261, 16777619, 0xFFFFFFFF


# The top-level names `_read` takes; a breakdown property named so is not read in place.
NAME_KINDS = {
    "type": K_TYPE,
    "event": K_EVENT,
    "account": K_ACCOUNT,
    "data": K_DATA,
    "time": K_TIME,
    "seq": K_SEQ,
    "publisher": K_PUBLISHER,
    "id": K_ID,
}
READ_NAMES = set(NAME_KINDS)


def receive(
    counter: Counter,
    recv: Any,
    limit: int,
    again: type[Exception],
    loads: Any,
    decode_error: type[Exception],
    unpack: Any,
    bad_json: object,
    bad_msgpack: object,
    seq_last: dict[Any, int],
    gaps: list[tuple[Any, int, int]],
    out: list[Any],
) -> tuple[int, int, bytes | None]:
    """Receive up to `limit` ZeroMQ messages without blocking and count them.

    A frame that is bare JSON or msgpack, or `"<topic> <payload>"`, is a whole
    message. Any other frame is returned as `odd` straight away, before the
    next receive, so the caller can read the rest of a multi-frame message.
    A JSON payload is read in place by `_read`; one it cannot read is decoded
    by `loads`, a msgpack map (its first byte is never one JSON starts with) by
    `unpack`; an undecodable one is appended as `bad_json` or `bad_msgpack`.
    `seq` numbers are checked per publisher (the `publisher` field, else the
    topic); gaps go to `gaps`. What `counter` cannot count goes to `out`, what it
    REFUSED to `counter.refused` (by how many were in `out` then).
    Returns (messages, events counted here, odd frame or None).
    """
    n = 0
    counted = 0
    frame: bytes
    topic = b""  # the last topic, reused while frames repeat it
    prop_name = counter.prop_name
    while n < limit:
        try:
            frame = recv(1)  # zmq.NOBLOCK
        except again:
            break
        if not frame:
            return n, counted, frame
        size = len(frame)
        start = 0
        c = frame[0]
        if c in (LBRACE, LBRACKET) or is_msgpack(c):
            if topic:
                topic = b""
        else:
            sp = _find_space(frame, size)
            if sp < 0 or size <= sp + 1:
                return n, counted, frame
            c = frame[sp + 1]
            if c != LBRACE and c != LBRACKET and not is_msgpack(c):
                return n, counted, frame
            if not _is(frame, 0, sp, topic):
                topic = frame[:sp]
            start = sp + 1
        n += 1
        if c == LBRACE:
            end = _read(frame, start, size, prop_name)
            if end >= 0 and _ws(frame, end, size) == size:
                if _seq is not None:
                    next_seq(_publisher if _publisher is not None else topic, _seq, seq_last, gaps)
                r = counter._take(frame)
                if r == COUNTED:
                    counted += 1
                elif r == REFUSED:
                    counter.refused.append(len(out))
                elif r == SLOW:
                    try:
                        out.append(loads(frame[start:] if start else frame))
                    except decode_error:
                        out.append(bad_json)  # not reached: `_read` checked the syntax
                continue
        payload = frame[start:] if start else frame
        if c in (LBRACE, LBRACKET):
            try:
                doc = loads(payload)
            except decode_error:
                out.append(bad_json)
                continue
        else:
            try:
                doc = unpack(payload)
            except Exception:  # msgpack raises several kinds, all of them bad input
                out.append(bad_msgpack)
                continue
        if type(doc) is list:
            for obj in doc:
                track_seq(obj, topic, seq_last, gaps)
                out.append(obj)
            continue
        track_seq(doc, topic, seq_last, gaps)
        r = counter.count_one(doc)
        if r == COUNTED:
            counted += 1
        elif r == SLOW:
            out.append(doc)
    return n, counted, None


def count_body(counter: Counter, p: bytes, slow: list[tuple[int, bytes]]) -> int:
    """Count the events of an HTTP body — one JSON event, an array, or NDJSON — in place.

    Returns how many events the body holds; those `counter` could not count are
    appended to `slow` as (index, their bytes), those it REFUSED to
    `counter.refused` by index. -1 when the body must be decoded whole (a syntax
    error in an array, an empty array, not an object): then nothing of it is in
    `slow`, and `counter`'s cells, ids and refusals must be dropped.
    """
    n = len(p)
    i = _ws(p, 0, n)
    if i >= n:
        return -1
    prop_name = counter.prop_name
    index = 0
    if p[i] == LBRACKET:
        i = _ws(p, i + 1, n)
        if i >= n or p[i] == RBRACKET:
            return -1
        while True:
            start = i
            end = _read(p, i, n, prop_name)
            if end >= 0:
                r = counter._take(p)
                if r == SLOW:
                    slow.append((index, p[start:end]))
                elif r == REFUSED:
                    counter.refused.append(index)
            else:
                end = _skip_value(p, i, n, 1)
                if end < 0:
                    return -1
                slow.append((index, p[start:end]))
            index += 1
            i = _ws(p, end, n)
            if i >= n:
                return -1
            if p[i] == COMMA:
                i = _ws(p, i + 1, n)
            elif p[i] == RBRACKET:
                break
            else:
                return -1
        return index if _ws(p, i + 1, n) == n else -1
    if p[i] != LBRACE:
        return -1
    end = _read(p, i, n, prop_name)
    if end < 0:
        return -1
    if _ws(p, end, n) == n:
        r = counter._take(p)
        if r == SLOW:
            slow.append((0, p[i:end]))
        elif r == REFUSED:
            counter.refused.append(0)
        return 1
    # More after the first object: NDJSON, one event a line (bytes.splitlines' lines),
    # if a line break separates them; else the body is just not JSON.
    last = n
    while last > 0 and _blank(p, last - 1, last):
        last -= 1
    while i < last and p[i] != 10:
        i += 1
    if i == last:
        return -1
    i = 0
    while i < n:
        eol = i
        while eol < n and p[eol] != 10 and p[eol] != 13:
            eol += 1
        if not _blank(p, i, eol):
            start = _ws(p, i, eol)
            end = _read(p, start, eol, prop_name) if start < eol else -1
            r = SLOW if end < 0 or _ws(p, end, eol) != eol else counter._take(p)
            if r == SLOW:
                slow.append((index, p[i:eol]))
            elif r == REFUSED:
                counter.refused.append(index)
            index += 1
        i = eol + 2 if eol + 1 < n and p[eol] == 13 and p[eol + 1] == 10 else eol + 1
    return index


def count_objs(counter: Counter, objs: list[Any], slow: list[tuple[int, Any]]) -> int:
    """Count decoded events; return how many, and append the rest to `slow` as
    (index, obj). Those queued for de-duplication are in `counter.ids`."""
    counted = 0
    i = -1
    for obj in objs:
        i += 1
        r = counter.count_one(obj)
        if r == COUNTED:
            counted += 1
        elif r == SLOW:
            slow.append((i, obj))
    return counted


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


def time_minute(text: bytes) -> int:
    """The Unix minute of a time in one of the forms `_time_minute` reads, else BAD_TIME."""
    return _time_minute(text, 0, len(text))


# -- reading an event in place ---------------------------------------------------------


def _read(p: bytes, i: int, n: int, prop_name: bytes) -> int:
    """Read the JSON object at p[i:n] into the module state; the index after it, or -1
    when it needs the decoder.

    The state follows `events.parse`: the account and event (`_acc_s`.. `_ev_e`, where
    they are in `p`) are `data.account` and `type` (else `event`) when `data` is an
    object with an `account`, else `account` and `event` (else `type`); start -1
    where that is not a plain string.
    `_minute` is the time's Unix minute, NO_TIME without one, BAD_TIME when the
    fast path cannot read it. `_bval` is the breakdown property's value (from the
    same object the account came from), `_eid` the id as text, `_seq` the `seq`
    integer and `_publisher` the `publisher` string, else None.
    """
    global _seq, _publisher, _minute, _eid, _bval, _acc_s, _acc_e, _ev_s, _ev_e
    if i >= n or p[i] != LBRACE:
        return -1
    seen = 0
    seen_data = 0
    # Where the names are in `p` (start -1: absent, or not a plain string).
    type_s = type_e = event_s = event_e = account_s = account_e = data_s = data_e = -1
    bval_top: Any = None
    bval_data: Any = None
    _seq = None
    _publisher = None
    _eid = None
    _minute = NO_TIME
    i = _ws(p, i + 1, n)
    if i < n and p[i] == RBRACE:
        _acc_s = _ev_s = -1
        _bval = None
        return i + 1
    while True:
        # A member: "name": value
        i = _member(p, i, n, prop_name, 1, seen)
        if i < 0:
            return -1
        kind = _kind
        seen |= kind
        c = p[i]
        if kind == 0 or (kind == K_DATA and c != LBRACE):
            i = _skip_value(p, i, n, 1)
        elif kind == K_DATA:
            i = _read_data(p, i, n, prop_name)
            seen_data = _number  # what `_read_data` found, as K_ bits
            data_s, data_e = _acc_s, _acc_e
            bval_data = _bval
        elif c == QUOTE:
            end = _string_end(p, i + 1, n)
            if end < 0:
                if kind != K_PROP:
                    return -1  # escapes or non-ASCII text where a value is read: decoder
                bval_top = _OTHER
                i = _skip_string(p, i + 1, n)
                end = i - 1
            if kind == K_TIME:
                _minute = _time_minute(p, i + 1, end)
            elif kind == K_TYPE:
                type_s, type_e = i + 1, end
            elif kind == K_EVENT:
                event_s, event_e = i + 1, end
            elif kind == K_ACCOUNT:
                account_s, account_e = i + 1, end
            elif kind == K_PROP:
                if bval_top is None:
                    bval_top = _plain_value(p, i + 1, end)
            elif kind == K_ID:
                if end - i - 1 > MAX_NAME:
                    return -1
                # An empty id is no id (events.parse).
                _eid = p[i + 1 : end].decode("ascii") if end > i + 1 else None
            elif kind == K_PUBLISHER:
                _publisher = p[i + 1 : end].decode("ascii")
            i = end + 1
        elif c == MINUS or ZERO <= c <= NINE:
            end = _number_end(p, i, n)
            if end < 0:
                return -1
            if kind == K_TIME:
                _minute = _number_minute(p, i, end)
            elif kind == K_SEQ:
                if _integer:
                    _seq = _number
            elif kind == K_ID:
                return -1  # the full parser spells numbers as text
            elif kind == K_PROP:
                bval_top = _OTHER
            i = end
        elif c == LOWER_N and kind != K_DATA:
            # null: as if absent (no time is now, no id, no breakdown value).
            i = _skip_value(p, i, n, 1)
            if kind in (K_TYPE, K_EVENT):
                seen &= ~kind
        else:
            if kind == K_ID:
                return -1
            if kind == K_PROP:
                bval_top = _OTHER
            elif kind == K_TIME:
                _minute = BAD_TIME
            i = _skip_value(p, i, n, 1)
        if i < 0:
            return -1
        # After a value: another member, or the end of the object. (Written out here,
        # in `_read_data` and in `_skip_value`: as one shared function the read of an
        # event measured 7% slower.)
        i = _ws(p, i, n)
        if i >= n:
            return -1
        if p[i] == COMMA:
            i = _ws(p, i + 1, n)
            continue
        if p[i] != RBRACE:
            return -1
        i += 1
        break
    if seen & K_DATA and seen_data & K_ACCOUNT:
        _acc_s, _acc_e = data_s, data_e
        _ev_s, _ev_e = (type_s, type_e) if seen & K_TYPE else (event_s, event_e)
        _bval = bval_data
    else:
        _acc_s, _acc_e = account_s, account_e
        _ev_s, _ev_e = (event_s, event_e) if seen & K_EVENT else (type_s, type_e)
        _bval = bval_top
    return i


def _read_data(p: bytes, i: int, n: int, prop_name: bytes) -> int:
    """Read the `data` object at p[i] (`account` and the breakdown property); the
    index after it, or -1. Leaves in `_acc_s`/`_acc_e` where the account is (start -1:
    not a plain string), in `_bval` the property's value, and in `_number` which of
    the two it met (K_ACCOUNT, K_PROP bits)."""
    global _acc_s, _acc_e, _bval, _number
    seen = 0
    _acc_s = -1
    _bval = None
    i = _ws(p, i + 1, n)
    if i < n and p[i] == RBRACE:
        _number = 0
        return i + 1
    while True:
        i = _member(p, i, n, prop_name, 2, seen)
        if i < 0:
            return -1
        kind = _kind
        seen |= kind
        if kind == K_ACCOUNT and p[i] == QUOTE:
            end = _string_end(p, i + 1, n)
            if end < 0:
                return -1
            _acc_s, _acc_e = i + 1, end
            i = end + 1
        else:
            end = _string_end(p, i + 1, n) if kind == K_PROP and p[i] == QUOTE else -1
            if end >= 0:
                _bval = _plain_value(p, i + 1, end)
                i = end + 1
            else:
                if kind == K_PROP and p[i] != LOWER_N:
                    _bval = _OTHER  # a number, non-ASCII text, ...: the full parser decides
                elif kind == K_ACCOUNT and p[i] == LOWER_N:
                    seen &= ~K_ACCOUNT  # null: as if absent (the flat shape's account then)
                i = _skip_value(p, i, n, 2)
                if i < 0:
                    return -1
        i = _ws(p, i, n)
        if i >= n:
            return -1
        if p[i] == COMMA:
            i = _ws(p, i + 1, n)
            continue
        if p[i] != RBRACE:
            return -1
        _number = seen
        return i + 1


def _plain_value(p: bytes, start: int, end: int) -> Any:
    """A breakdown value as `events.parse` keeps it: None when too long or holding DEL."""
    if end - start > MAX_NAME:
        return None
    for j in range(start, end):
        if p[j] == 127:
            return None
    return p[start:end].decode("ascii")


def _member(p: bytes, i: int, n: int, prop_name: bytes, depth: int, seen: int) -> int:
    """Read a member's `"name":` at p[i] (in the event, depth 1, or in its `data`,
    depth 2); the index of its value, or -1 — also for a name already in `seen`
    (a decoder keeps the last of repeated names: let it). Which one goes to `_kind`."""
    global _kind
    if i >= n or p[i] != QUOTE:
        return -1
    end = _string_end(p, i + 1, n)
    if end >= 0:
        _kind = _name_kind(p, i + 1, end, prop_name, depth)
    else:
        end = _skip_string(p, i + 1, n) - 1
        if end < 0:
            return -1
        _kind = _escaped_kind(p, i, end, prop_name, depth)
    if _kind & seen:
        return -1
    i = _ws(p, end + 1, n)
    if i >= n or p[i] != COLON:
        return -1
    i = _ws(p, i + 1, n)
    return i if i < n else -1


def _name_kind(p: bytes, start: int, end: int, prop_name: bytes, depth: int) -> int:
    """Which of the names `_read` takes (depth 1) or `_read_data` takes (depth 2)
    p[start:end] is (a K_ bit), or 0."""
    size = end - start
    if depth == 2:
        if _is(p, start, size, b"account"):
            return K_ACCOUNT
    elif size == 4:
        if _is(p, start, size, b"type"):
            return K_TYPE
        if _is(p, start, size, b"time"):
            return K_TIME
        if _is(p, start, size, b"data"):
            return K_DATA
    elif size == 7:
        if _is(p, start, size, b"account"):
            return K_ACCOUNT
    elif size == 5:
        if _is(p, start, size, b"event"):
            return K_EVENT
    elif size == 3:
        if _is(p, start, size, b"seq"):
            return K_SEQ
    elif size == 9:
        if _is(p, start, size, b"publisher"):
            return K_PUBLISHER
    elif size == 2 and _is(p, start, size, b"id"):
        return K_ID
    if size and _is(p, start, size, prop_name):
        return K_PROP
    return 0


def _escaped_kind(p: bytes, quote: int, end: int, prop_name: bytes, depth: int) -> int:
    """`_name_kind` of a name written with escapes or non-ASCII text (rare: decoded)."""
    name = loads(p[quote : end + 1])
    if depth == 2:
        if name == "account":
            return K_ACCOUNT
    else:
        kind = NAME_KINDS.get(name)
        if kind is not None:
            return int(kind)
    return K_PROP if prop_name and name == prop_name.decode() else 0


# -- times ----------------------------------------------------------------------------


def _number_minute(p: bytes, start: int, end: int) -> int:
    """The Unix minute of a number of seconds `_number_end` just read, or BAD_TIME."""
    if _integer:
        return _number // 60 if 0 <= _number <= MAX_TIME else BAD_TIME
    t = float(p[start:end])
    return int(t // 60) if 0.0 <= t <= MAX_TIME else BAD_TIME


def _time_minute(p: bytes, s: int, e: int) -> int:
    """The Unix minute of the time p[s:e], or BAD_TIME for a form it does not read.

    Reads `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` (RFC 3339 and its
    common relatives; no offset is UTC) and Ruby's `YYYY-MM-DD HH:MM:SS ±HHMM`,
    from 1970 UTC on — everything else is for the full parser. Seconds and their
    fraction never change the minute, so only the calendar is worked out.
    """
    if e - s < 19:
        return BAD_TIME
    if (
        p[s + 4] != MINUS
        or p[s + 7] != MINUS
        or (p[s + 10] != UPPER_T and p[s + 10] != SPACE)
        or p[s + 13] != COLON
        or p[s + 16] != COLON
    ):
        return BAD_TIME
    year = _digits(p, s, 4)
    month = _digits(p, s + 5, 2)
    day = _digits(p, s + 8, 2)
    hour = _digits(p, s + 11, 2)
    minute = _digits(p, s + 14, 2)
    second = _digits(p, s + 17, 2)
    if (year | month | day | hour | minute | second) < 0:
        return BAD_TIME  # not digits
    if (
        year < 1969
        or not 1 <= month <= 12
        or day < 1
        or day > _month_days(year, month)
        or hour > 23
        or minute > 59
        or second > 59
    ):
        return BAD_TIME
    j = s + 19
    if j < e and p[j] == DOT:
        j += 1
        k = j
        while j < e and ZERO <= p[j] <= NINE:
            j += 1
        if j == k or j - k > 9:
            return BAD_TIME
    offset = 0
    if j < e:
        c = p[j]
        if c == UPPER_Z:
            j += 1
        else:
            if c == SPACE:
                # Ruby's Time#to_s: a space, then ±HHMM, after whole seconds.
                if p[s + 10] != SPACE or j != s + 19 or e - j != 6:
                    return BAD_TIME
                j += 1
                c = p[j]
            if c != PLUS and c != MINUS:
                return BAD_TIME
            oh = _digits(p, j + 1, 2) if j + 3 <= e else -1
            if j + 6 == e and p[j + 3] == COLON:
                om = _digits(p, j + 4, 2)
            elif j + 5 == e:
                om = _digits(p, j + 3, 2)
            else:
                return BAD_TIME
            if not 0 <= oh <= 23 or not 0 <= om <= 59:
                return BAD_TIME
            offset = oh * 60 + om
            if c == MINUS:
                offset = -offset
            j = e
    if j != e:
        return BAD_TIME
    m = _days_from_civil(year, month, day) * 1440 + hour * 60 + minute - offset
    if m < 0 or m * 60 + second >= MAX_TIME:
        return BAD_TIME
    return m


def _digits(p: bytes, i: int, count: int) -> int:
    """The decimal number in p[i:i+count], or -1 if a byte there is not a digit."""
    v = 0
    for j in range(i, i + count):
        c = p[j]
        if not ZERO <= c <= NINE:
            return -1
        v = v * 10 + (c - ZERO)
    return v


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, year ≥ 1 (H. Hinnant's)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# -- JSON syntax ----------------------------------------------------------------------


def _skip_value(p: bytes, i: int, n: int, depth: int) -> int:
    """The index after the JSON value at p[i], or -1 if it is not valid JSON (or is
    something only the decoder should judge: lone surrogates, very deep nesting)."""
    if i >= n:
        return -1
    c = p[i]
    if c == QUOTE:
        return _skip_string(p, i + 1, n)
    if c == MINUS or ZERO <= c <= NINE:
        return _number_end(p, i, n)
    if c in (LBRACE, LBRACKET):
        if depth >= MAX_DEPTH:
            return -1
        close = RBRACE if c == LBRACE else RBRACKET
        i = _ws(p, i + 1, n)
        if i < n and p[i] == close:
            return i + 1
        while True:
            if c == LBRACE:
                if i >= n or p[i] != QUOTE:
                    return -1
                i = _skip_string(p, i + 1, n)
                if i < 0:
                    return -1
                i = _ws(p, i, n)
                if i >= n or p[i] != COLON:
                    return -1
                i = _ws(p, i + 1, n)
            i = _skip_value(p, i, n, depth + 1)
            if i < 0:
                return -1
            i = _ws(p, i, n)
            if i >= n:
                return -1
            if p[i] == COMMA:
                i = _ws(p, i + 1, n)
            elif p[i] == close:
                return i + 1
            else:
                return -1
    if c == LOWER_T:
        return i + 4 if _is(p, i, min(4, n - i), b"true") else -1
    if c == LOWER_F:
        return i + 5 if _is(p, i, min(5, n - i), b"false") else -1
    if c == LOWER_N:
        return i + 4 if _is(p, i, min(4, n - i), b"null") else -1
    return -1


def _skip_string(p: bytes, i: int, n: int) -> int:
    """The index after the quote closing the string whose text starts at `i`, or -1
    for invalid JSON or UTF-8 (and for a \\u escape of a surrogate)."""
    while i < n:
        c = p[i]
        if _PLAIN_T[c]:
            i += 1
            continue
        if c == QUOTE:
            return i + 1
        if c < 128:
            if c < 32:
                return -1
            if c == BACKSLASH:
                i += 1
                if i >= n:
                    return -1
                c = p[i]
                if c == LOWER_U:
                    v = _hex4(p, i + 1, n)
                    if v < 0 or 0xD800 <= v <= 0xDFFF:
                        return -1
                    i += 4
                elif not _is_escape(c):
                    return -1
            i += 1
            continue
        # UTF-8: the lead byte fixes the length and the range of the first continuation.
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            more = 1
        elif 0xE0 <= c <= 0xEF:
            more = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            more = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return -1
        if i + more >= n:
            return -1
        c = p[i + 1]
        if c < lo or c > hi:
            return -1
        for j in range(i + 2, i + more + 1):
            c = p[j]
            if c < 0x80 or c > 0xBF:
                return -1
        i += more + 1
    return -1


def _is_escape(c: int) -> bool:
    """Whether `\\c` is one of JSON's one-letter escapes."""
    return c == QUOTE or c == BACKSLASH or c == 47 or c in (98, 102, 110, 114, 116)  # /bfnrt


def _hex4(p: bytes, i: int, n: int) -> int:
    if i + 4 > n:
        return -1
    v = 0
    for j in range(i, i + 4):
        c = p[j]
        if ZERO <= c <= NINE:
            v = v * 16 + (c - ZERO)
        elif 97 <= c <= 102:
            v = v * 16 + (c - 87)
        elif 65 <= c <= 70:
            v = v * 16 + (c - 55)
        else:
            return -1
    return v


def _number_end(p: bytes, i: int, n: int) -> int:
    """The end of the JSON number at p[i], or -1. An integer of at most MAX_DIGITS
    digits leaves its value in `_number` and `_integer` set; a number a decoder
    might find out of range (too many digits, a long exponent) is -1 too."""
    global _number, _integer
    negative = p[i] == MINUS
    if negative:
        i += 1
    if i >= n or not ZERO <= p[i] <= NINE:
        return -1
    start = i
    v = 0
    if p[i] == ZERO:
        i += 1
    else:
        while i < n and ZERO <= p[i] <= NINE:
            if i - start < MAX_DIGITS:
                v = v * 10 + (p[i] - ZERO)
            i += 1
    digits = i - start
    if digits > MAX_FLOAT_DIGITS:
        return -1
    integer = digits <= MAX_DIGITS
    if i < n and p[i] == DOT:
        i += 1
        k = i
        while i < n and ZERO <= p[i] <= NINE:
            i += 1
        if i == k or i - k > MAX_FLOAT_DIGITS:
            return -1
        integer = False
    if i < n and (p[i] == LOWER_E or p[i] == UPPER_E):
        i += 1
        up = True
        if i < n and (p[i] == PLUS or p[i] == MINUS):
            up = p[i] == PLUS
            i += 1
        k = i
        exp = 0
        while i < n and ZERO <= p[i] <= NINE:
            if exp < 10_000:
                exp = exp * 10 + (p[i] - ZERO)
            i += 1
        # Past about 1e308 a decoder fails (infinity); below, it rounds to zero.
        if i == k or (up and digits + exp > MAX_FLOAT_DIGITS):
            return -1
        integer = False
    _integer = integer
    if integer:
        _number = -v if negative else v
    return i


def _ws(p: bytes, i: int, n: int) -> int:
    """The index of the first byte at or after `i` that is not JSON whitespace."""
    while i < n:
        c = p[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


def _valid_name(p: bytes, start: int, end: int) -> bool:
    """Whether the plain string p[start:end] (`_string_end`'s: printable ASCII and
    DEL) is a valid name (`events.check_name`): 1 to MAX_NAME characters, no DEL."""
    if end <= start or end - start > MAX_NAME:
        return False
    for j in range(start, end):  # noqa: SIM110 - compiles to a C loop
        if p[j] == 127:
            return False
    return True


def _is_rollup(p: bytes, start: int, end: int) -> bool:
    """Whether p[start:end] is a rollup's name (`rules.reserved`): `all`, `owner/*`."""
    size = end - start
    suffix = len(PREFIX_BYTES)
    if _is(p, start, size, ROLLUP_BYTES):
        return True
    return size >= suffix and _is(p, end - suffix, suffix, PREFIX_BYTES)


def _blank(p: bytes, i: int, end: int) -> bool:
    """Whether p[i:end] is empty after `bytes.strip()` (ASCII whitespace)."""
    for j in range(i, end):
        c = p[j]
        if c != 32 and not 9 <= c <= 13:
            return False
    return True


def _string_end(p: bytes, i: int, n: int) -> int:
    """The index of the quote closing a string that starts at `i`, or -1 when the
    string holds an escape, a control or a non-ASCII byte (or never ends)."""
    while i < n and _PLAIN_T[p[i]]:
        i += 1
    return i if i < n and p[i] == QUOTE else -1


def _find_space(p: bytes, n: int) -> int:
    """The index of the first space in p[:n], or -1."""
    for i in range(n):
        if p[i] == 32:
            return i
    return -1


def is_msgpack(c: int) -> bool:
    """Whether a payload's first byte starts a msgpack map (fixmap, map 16, map 32)."""
    return 0x80 <= c <= 0x8F or c == 0xDE or c == 0xDF


def _is(p: bytes, start: int, size: int, name: bytes) -> bool:
    if size != len(name):
        return False
    for j in range(size):  # noqa: SIM110 - compiles to a C loop; all() would be a generator
        if p[start + j] != name[j]:
            return False
    return True
