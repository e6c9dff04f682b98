"""Parsing and validating incoming events (SPEC §1).

`parse` is on the ingest hot path: it does the fewest dictionary look-ups that
still check everything, and only the rejection path raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeGuard

import ciso8601
import orjson

from tallyd.rules import MAX_NAME, MAX_TIME, ROLLUP, reserved

# (account, event, epoch minute, breakdown value, producer id)
Event = tuple[str, str, int, str | None, str | None]

log = logging.getLogger("tallyd.events")


class Rejected(ValueError):
    """An event that cannot be counted; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason

    def kept(self) -> Rejected:
        """This rejection, fit to be kept once caught: without its traceback and the
        exception it was raised over, which hold the frames that raised it. Each is
        a cycle only the collector frees, in passes that come rarely to what has
        lived a while: a 1 MB body of 340,000 refused events held ~500 MB until a
        full pass, which then stalled every client for 10 s."""
        self.__traceback__ = None
        self.__context__ = None
        return self


def _has_control(s: str) -> bool:
    # Fast path: printable ASCII is by far the common case.
    if s.isascii() and s.isprintable():
        return False
    return any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in s)


def check_id_names(account: object, event: object) -> None:
    """Raise `Rejected` unless the names are an id's: valid, and the account no rollup
    (an owner's action or a baseline names one id)."""
    name = check_name(account, "account")
    check_name(event, "event")
    if reserved(name):
        raise Rejected("reserved_account", f"{account!r} is a rollup of other accounts, not an id")


def check_name(value: object, what: str) -> str:
    """Validate an account or event name; raise `Rejected` with the reason."""
    if type(value) is not str:
        if value is None:
            raise Rejected(f"missing_{what}", f"{what} is required")
        raise Rejected(f"bad_{what}", f"{what} must be a string")
    if not value:
        raise Rejected(f"bad_{what}", f"{what} is empty")
    if len(value) > MAX_NAME:
        raise Rejected("too_long", f"{what} is longer than {MAX_NAME} characters")
    if _has_control(value):
        raise Rejected("control_chars", f"{what} contains control characters")
    return value


# Unix seconds written as text: JSON's number grammar, nothing looser (no "nan", "1_0").
SECONDS = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# The ISO 8601 / RFC 3339 forms taken (ciso8601 reads more: week and ordinal dates,
# basic format, any number of fraction digits): a calendar date, then perhaps a time
# to the minute or second with up to nine fraction digits, then perhaps an offset.
ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
# Ruby's Time#to_s: "2013-09-05 09:04:16 -0400", or "... UTC".
RUBY = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) ([+-][0-9]{4}|UTC)")


def parse_time(value: object) -> float:
    """Unix seconds from the time of an event; raise `Rejected` ("bad_time") if it is none.

    Takes ISO 8601 / RFC 3339 (a fraction up to nanoseconds, an offset `Z`,
    `+02:00` or `+0200`, `T` or a space; no offset is UTC), Ruby's
    `YYYY-MM-DD HH:MM:SS ±HHMM`, and Unix seconds as a number or as text
    (integer, fraction or exponent form, as Go prints `1.378387063e+09`).
    """
    if type(value) is int or type(value) is float:
        t = float(value)
    elif type(value) is str:
        if SECONDS.fullmatch(value):
            t = float(value)
        else:
            ruby = RUBY.fullmatch(value)
            text = value if ruby is None else ruby[1] + ("Z" if ruby[2] == "UTC" else ruby[2])
            try:
                if not ISO.fullmatch(text):
                    raise ValueError(text)
                dt = ciso8601.parse_datetime(text)
            except ValueError:
                raise Rejected("bad_time", f"time {value[:40]!r}: not a time") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            try:
                t = dt.timestamp()
            except (OverflowError, ValueError):
                raise Rejected("bad_time", "time is out of range") from None
    else:
        raise Rejected("bad_time", "time must be ISO 8601, RFC 3339 or Unix seconds")
    if not math.isfinite(t) or not 0 <= t <= MAX_TIME:
        raise Rejected("bad_time", "time is out of range")
    return t


def decoded(raw: bytes, what: str) -> Any:
    """The JSON value of `raw`, or a `Rejected` ("invalid_json") saying `what` is not
    JSON: a source hands it on with the rest, and it is counted and logged there."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected("invalid_json", f"{what} is not JSON")


def _name_ok(v: object) -> TypeGuard[str]:
    # The common case in one expression: a short printable ASCII string.
    return type(v) is str and 0 < len(v) <= MAX_NAME and v.isascii() and v.isprintable()


def parse(obj: Any, breakdowns: dict[str, str], now: float) -> Event:
    """Turn one decoded JSON value into an `Event`, or raise `Rejected`.

    Accepts the Bootic shape (`type` + `data.account`) and the flat shape
    (`event` + `account`). `breakdowns` maps an event type to the property
    whose values are counted separately (the funnels). `now` is used when the
    event has no time.
    """
    if type(obj) is not dict:
        raise Rejected("not_an_object", "an event must be a JSON object")
    data = obj.get("data")
    # A null `data.account` is an absent one, as a null `event` is: the flat shape's.
    if type(data) is dict and data.get("account") is not None:
        event = obj.get("type")
        if event is None:
            event = obj.get("event")
        account = data["account"]
    else:
        data = obj
        event = obj.get("event")
        if event is None:
            event = obj.get("type")
        account = obj.get("account")
    if not _name_ok(event):
        event = check_name(event, "type")
    if not _name_ok(account):
        account = check_name(account, "account")
    if reserved(account):
        raise Rejected(
            "reserved_account",
            f"{ROLLUP!r} and names ending in '/*' are rollups",
        )

    t = obj.get("time")
    if t is None:
        t = now
    elif type(t) is not int or not 0 <= t <= MAX_TIME:
        t = parse_time(t)

    bval: str | None = None
    if breakdowns:
        prop = breakdowns.get(event)
        if prop is not None:
            v = data.get(prop)
            if type(v) is str:
                if len(v) <= MAX_NAME and not _has_control(v):
                    bval = v
            elif type(v) is int or type(v) is bool or type(v) is float:
                bval = scalar_text(v)

    eid = obj.get("id")
    if eid is not None:
        if type(eid) is int:
            eid = str(eid)
        elif type(eid) is float and eid.is_integer():
            eid = str(int(eid))  # Go writes every number as a float: 1.234567e+06 is 1234567
        elif type(eid) is not str or len(eid) > MAX_NAME:
            raise Rejected(
                "bad_id", f"id must be text of at most {MAX_NAME} characters or a whole number"
            )
        elif not eid:
            eid = None  # an empty id is no id: it would make every event after the first a retry
    return (account, event, int(t // 60), bval, eid)


# (account, event, epoch minute, breakdown value): what the aggregator counts.
Cell = tuple[str, str, int, str | None]
# Names remembered as valid. Past this, one old name makes room for each new one
# (a name forgotten is checked again once), so no workload drops them all at once.
MAX_KNOWN = 200_000
NEW_NAME_LIMIT = Rejected(
    "new_name_limit", "new accounts or event types are coming too fast; send it again later"
)


def parse_many(
    items: list[tuple[int, Any]],
    breakdowns: dict[str, str],
    now: float,
    known: set[str],
    admit: Callable[[str], bool] | None = None,
) -> tuple[list[Cell], list[Event], list[tuple[int, Rejected]]]:
    """Fully check `(index, value)` items the fast path passed over.

    Returns the cells of events without an id, the events with one (for
    de-duplication), and the rejections by index. Names that pass are added to
    `known`, so later events with them take the fast path (`hotpath.Counter`);
    `admit`, when given, decides whether a name not known yet may be counted (and
    remembers it): past a limit on new names, the event is `new_name_limit`.
    """
    cells: list[Cell] = []
    with_ids: list[Event] = []
    rejected: list[tuple[int, Rejected]] = []
    for i, obj in items:
        if type(obj) is Rejected:
            # A source could not even decode this one; it arrives pre-rejected.
            rejected.append((i, obj))
            continue
        try:
            ev = parse(obj, breakdowns, now)
        except Rejected as err:
            rejected.append((i, err.kept()))
            continue
        # "all" and "owner/*" are valid event names but never accounts: keep them out
        # of the shared set, so the fast paths, which count only known names, refuse them.
        if admit is not None:
            # Known names first, without a call: a flood's events are checked here
            # a million a minute.
            account, event = ev[0], ev[1]
            if not (
                (account in known or reserved(account) or admit(account))
                and (event in known or reserved(event) or admit(event))
            ):
                rejected.append((i, NEW_NAME_LIMIT))
                continue
        else:
            for name in ev[:2]:
                if name not in known and not reserved(name):
                    if len(known) >= MAX_KNOWN:
                        known.pop()
                    known.add(name)
        if ev[4] is None:
            cells.append(ev[:4])
        else:
            with_ids.append(ev)
    return cells, with_ids, rejected


def scalar_text(v: int | float | bool) -> str:
    """A breakdown value as JSON would spell it (`true`, `3`, `2.5`)."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is float and v.is_integer():
        return str(int(v))  # 1e+06 and 1000000 are one value, as Go wrote it either way
    return str(v)


MAX_SOURCES = 1_000


class _Folded:
    """One source's log clock: when its next line may be written, and what was folded
    into it meanwhile (how many, the latest, whether a line is due for them)."""

    __slots__ = ("due", "latest", "n", "next_at")

    def __init__(self) -> None:
        self.next_at = 0.0
        self.n = 0
        self.latest: Rejected | None = None
        self.due = False


class RejectLog:
    """Logs rejections at most once per second per source, with how many were folded in.

    Each source has its own clock, so a flood from one cannot hide (or be
    reported as) another's. What was folded is reported when its second is up, not
    only at the next rejection: a crowd refused all at once is one line now and one
    with the rest a second later, not a count held back until the next refusal.
    """

    def __init__(
        self, logger: logging.Logger = log, every: float = 1.0, what: str = "rejected event from"
    ) -> None:
        self._log = logger
        self._every = every
        self._what = what
        self._state: dict[str, _Folded] = {}

    def __call__(self, source: str, err: Rejected, n: int = 1) -> None:
        """`n` rejections like `err` (the others of a batch are folded into its line)."""
        now = time.monotonic()
        state = self._state.get(source)
        if state is None:
            if len(self._state) >= MAX_SOURCES:  # callers may label by path: stay bounded
                self._state.clear()
            state = self._state[source] = _Folded()
        if now < state.next_at:
            state.n += n
            state.latest = err
            if not state.due:
                state.due = self._report_later(source, state, state.next_at - now)
            return
        state.n += n - 1
        self._write(source, err, state, now)

    def _write(self, source: str, err: Rejected, state: _Folded, now: float) -> None:
        more = f" (+{state.n} more since last report)" if state.n else ""
        self._log.warning("%s %s: %s: %s%s", self._what, source, err.reason, err.detail, more)
        state.next_at = now + self._every
        state.n = 0
        state.latest = None

    def _report_later(self, source: str, state: _Folded, delay: float) -> bool:
        """Write the folded line when its second is up; False outside an event loop
        (then the next rejection writes it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_later(delay, self._due, source, state)
        return True

    def _due(self, source: str, state: _Folded) -> None:
        state.due = False
        if state.latest is not None and self._state.get(source) is state:
            latest, state.n = state.latest, state.n - 1
            self._write(source, latest, state, time.monotonic())
