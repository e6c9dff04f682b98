"""Parsing and validating incoming events (SPEC §1).

`parse` is on the ingest hot path: it does the fewest dictionary look-ups that
still check everything, and only the rejection path raises.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import Any, TypeGuard

MAX_NAME = 200
# Unix seconds past this are after year 9999: nothing sane, and datetime can't hold it.
MAX_TIME = 253402300799.0

# (account, event, epoch minute, breakdown value, producer id)
Event = tuple[str, str, int, str | None, str | None]

log = logging.getLogger("tallyd.events")


class Rejected(ValueError):
    """An event that cannot be counted; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


def _has_control(s: str) -> bool:
    # Fast path: printable ASCII is by far the common case.
    if s.isascii() and s.isprintable():
        return False
    return any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in s)


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


def parse_time(value: object) -> float:
    """Unix seconds from an ISO 8601 string or a number; naive times are UTC."""
    if type(value) is int or type(value) is float:
        t = float(value)
    elif type(value) is str:
        try:
            t = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                raise Rejected("bad_time", f"time {value[:40]!r} is not ISO 8601") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            t = dt.timestamp()
    else:
        raise Rejected("bad_time", "time must be ISO 8601 or Unix seconds")
    if not math.isfinite(t) or not 0 <= t <= MAX_TIME:
        raise Rejected("bad_time", "time is out of range")
    return t


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
    if type(data) is dict and "account" in data:
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
    if account == "all":
        raise Rejected("reserved_account", "'all' is the rollup of every account")

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
        elif type(eid) is not str or len(eid) > MAX_NAME:
            raise Rejected("bad_id", f"id must be a string of at most {MAX_NAME} characters")
    return (account, event, int(t // 60), bval, eid)


# (account, event, epoch minute, breakdown value): what the aggregator counts.
Cell = tuple[str, str, int, str | None]
MAX_KNOWN = 100_000


def parse_many(
    items: list[tuple[int, Any]], breakdowns: dict[str, str], now: float, known: set[str]
) -> tuple[list[Cell], list[Event], list[tuple[int, Rejected]]]:
    """Fully check `(index, value)` items the fast path passed over.

    Returns the cells of events without an id, the events with one (for
    de-duplication), and the rejections by index. Names that pass are added to
    `known`, so later events with them take the fast path (`hotpath.count_known`).
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
            rejected.append((i, err))
            continue
        if ev[4] is None:
            cells.append(ev[:4])
        else:
            with_ids.append(ev)
        if len(known) >= MAX_KNOWN:
            known.clear()
        # "all" is a valid event name but never an account: keep it out of the shared set.
        known.add(ev[0])
        if ev[1] != "all":
            known.add(ev[1])
    return cells, with_ids, rejected


def scalar_text(v: int | float | bool) -> str:
    """A breakdown value as JSON would spell it (`true`, `3`, `2.5`)."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


class RejectLog:
    """Logs rejections at most once per second, with how many were folded in."""

    def __init__(
        self, logger: logging.Logger = log, every: float = 1.0, what: str = "rejected event from"
    ) -> None:
        self._log = logger
        self._every = every
        self._what = what
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, source: str, err: Rejected) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        more = f" (+{self._suppressed} more since last report)" if self._suppressed else ""
        self._log.warning("%s %s: %s: %s%s", self._what, source, err.reason, err.detail, more)
        self._suppressed = 0
        self._next = now + self._every
