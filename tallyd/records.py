"""The JSON Lines format of `tallyd export` and `tallyd import` (docs/export-import.md).

One record a line, keys without the store's `--key-prefix`:

    {"tallyd": "export", "version": 1, ...}                  first line (optional)
    {"key": "acme/pageview/2013", "field": "09", "count": 101}   a counter cell
    {"index": "accounts:pageview", "member": "acme"}             an index entry
    {"ranking": "top:pageview/2013/09", "member": "acme", "score": 101}
    {"unique": "unique:acme/hit/2013/09/05", "registers": "<base64>"}   a sketch
    {"expire": "acme/pageview/2013/09/05", "at": 1412380800}     a key's expiry
    {"baseline": "baseline:acme/hit", "count": 1234}             an id's starting count
    {"end": {"records": 5}}                                      last line (optional)

Every key is checked against tallyd's layout (tallyd.keys) for its record's
kind, so no import can write a key tallyd does not keep — its batch markers
least of all.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson

from tallyd import hll
from tallyd.events import Rejected, check_id_names
from tallyd.keys import BASELINE, escape
from tallyd.stores import hll_codec
from tallyd.stores.base import Contents

VERSION = 1
NAME = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+")
# Widths of a period's parts: year, month, day, hour, minute.
WIDTHS = (4, 2, 2, 2, 2)
RANGES = ((1970, 9999), (1, 12), (1, 31), (0, 23), (0, 59))
# The largest count or score: what a Lua number (an import's script on Redis)
# holds exactly. Export writes no more, import takes no more, seeds give no more.
MOST = 2**53 - 1


class BadRecord(ValueError):
    """A line that is no record of this format; its message says why."""


class TooLarge(ValueError):
    """A store's count or score past MOST: no import would take it."""

    def __init__(self, key: str, what: str, n: int) -> None:
        super().__init__(
            f"{key} {what} holds {n:,}, more than 2^53 - 1, the largest count an import "
            "takes: the file is unfinished"
        )


class Key(NamedTuple):
    """A key of tallyd's layout: its kind, escaped account and event, period parts."""

    kind: str  # counter, funnel, index, ranking, unique, baseline
    account: str | None
    event: str | None
    parts: tuple[str, ...]


def _part_ok(depth: int, part: str) -> bool:
    """Whether `part` is a period part at `depth` (0: a year ... 4: a minute)."""
    low, high = RANGES[depth]
    return len(part) == WIDTHS[depth] and part.isdigit() and low <= int(part) <= high


def _parts_ok(parts: list[str]) -> bool:
    return all(_part_ok(i, p) for i, p in enumerate(parts))


def _names_parts(text: str, least: int, most: int) -> tuple[str, str, tuple[str, ...]] | None:
    """`account/event/YYYY/MM...` with between `least` and `most` period parts."""
    segments = text.split("/")
    if not least + 2 <= len(segments) <= most + 2:
        return None
    account, event, *parts = segments
    if not (NAME.fullmatch(account) and NAME.fullmatch(event) and _parts_ok(parts)):
        return None
    return account, event, tuple(parts)


# Keys repeat line after line (every field of a hash): each is parsed once.
@lru_cache(maxsize=1 << 16)
def classify(key: str) -> Key | None:
    """What a key (without the key prefix) is in tallyd's layout, or None."""
    head, colon, rest = key.partition(":")
    if not colon:
        if key == "events":
            return Key("index", None, None, ())
        found = _names_parts(key, 0, 4)
        return Key("counter", *found) if found else None
    if head in ("funnels", "unique"):
        kind, least, most = ("funnel", 1, 2) if head == "funnels" else ("unique", 3, 3)
        found = _names_parts(rest, least, most)
        return Key(kind, *found) if found else None
    if head == "baseline":
        found = _names_parts(rest, 0, 0)
        return Key("baseline", *found) if found else None
    if head in ("events", "accounts") and NAME.fullmatch(rest):
        return Key("index", rest, None, ()) if head == "events" else Key("index", None, rest, ())
    if head == "top":
        event, _, period = rest.partition("/")
        parts = period.split("/")
        if NAME.fullmatch(event) and len(parts) in (2, 3) and _parts_ok(parts):
            return Key("ranking", None, event, tuple(parts))
    return None


def _days(parts: tuple[str, ...]) -> tuple[date, date]:
    """The first and last day of a period (a year, a month, or a day or finer)."""
    y = int(parts[0])
    if len(parts) == 1:
        return date(y, 1, 1), date(y, 12, 31)
    m = int(parts[1])
    if len(parts) == 2:
        return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
    d = date(y, m, int(parts[2]))
    return d, d


@dataclass
class Filter:
    """Which records an export writes: accounts, events (escaped), a range of days.

    A cell is in the range when its whole period is: a counter cell's period is
    its key's parts and its field (`acme/pageview/2013` field `09` is September
    2013), a funnel's, ranking's, sketch's or expiry's that of its key. Indexes
    have no period: they go with their account and event whatever the range. A
    baseline counts for all time, which no range holds wholly: only an export
    of every day has it (exports of two ranges imported would add it twice).
    """

    accounts: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    start: date | None = None
    end: date | None = None

    def key(self, k: Key) -> bool:
        """Whether any record of this key may be wanted (before reading it)."""
        if self.accounts and k.account is not None and k.account not in self.accounts:
            return False
        return not (self.events and k.event is not None and k.event not in self.events)

    def cell(self, k: Key, f: str) -> bool:
        """Whether field `f` of a counter, funnel or baseline hash is in the range."""
        if k.kind == "baseline":
            return f == BASELINE and self.start is None and self.end is None
        return self.period((*k.parts, f) if k.kind == "counter" else k.parts)

    def member(self, k: Key, member: str) -> bool:
        """Whether an index or ranking member is wanted: an account, or an event
        (in `events` and `events:A`)."""
        names = self.events if k.kind == "index" and k.event is None else self.accounts
        return not names or member in names

    def period(self, parts: tuple[str, ...]) -> bool:
        if not parts or (self.start is None and self.end is None):
            return True
        try:
            first, last = _days(parts)
        except ValueError:  # a day that is no date (2013/02/30): not in any range
            return False
        return (self.start is None or self.start <= first) and (
            self.end is None or last <= self.end
        )

    def describe(self) -> dict[str, Any]:
        return {
            "accounts": sorted(self.accounts),
            "events": sorted(self.events),
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


def day_bound(text: str, end: bool) -> date:
    """`YYYY`, `YYYY-MM` or `YYYY-MM-DD`: its first day, or its last if `end`."""
    pieces = text.split("-")
    if not 1 <= len(pieces) <= 3 or not all(p.isdigit() for p in pieces):
        raise ValueError(f"{text!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    try:
        if len(pieces) == 3:
            return date(*(int(p) for p in pieces))
        first, last = _days(tuple(pieces))
    except (ValueError, IndexError):
        raise ValueError(f"{text!r} is no date") from None
    return last if end else first


def make_filter(
    accounts: list[str], events: list[str], start: str | None, end: str | None
) -> Filter:
    """A Filter from names as users write them and `day_bound` texts; ValueError if bad."""
    flt = Filter(
        {escape(a) for a in accounts},
        {escape(e) for e in events},
        day_bound(start, False) if start else None,
        day_bound(end, True) if end else None,
    )
    if flt.start and flt.end and flt.end < flt.start:
        raise ValueError("--to is before --from")
    return flt


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def header(store: str, key_prefix: str, flt: Filter) -> bytes:
    return _line(
        {
            "tallyd": "export",
            "version": VERSION,
            "store": store,
            "key_prefix": key_prefix,
            "filter": flt.describe(),
        }
    )


def trailer(records: int) -> bytes:
    return _line({"end": {"records": records}})


class Tally(dict[str, int]):
    """Records written or read, by kind."""

    def add(self, kind: str, n: int = 1) -> None:
        self[kind] = self.get(kind, 0) + n

    def total(self) -> int:
        return sum(self.values())

    def describe(self) -> str:
        return ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.items())) or "nothing"


def lines(part: Contents, prefix: str, flt: Filter, tally: Tally) -> Iterator[bytes]:
    """The records of a store's contents that are tallyd's and wanted."""
    cut = len(prefix)

    def kind_of(key: str) -> tuple[str, Key | None]:
        k = classify(key[cut:]) if key.startswith(prefix) else None
        return key[cut:], (k if k is not None and flt.key(k) else None)

    for key, fields in part.counters.items():
        name, k = kind_of(key)
        if k is None or k.kind not in ("counter", "funnel", "baseline"):
            continue
        for f, n in fields.items():
            if not flt.cell(k, f):
                continue
            if n > MOST:
                raise TooLarge(name, f"field {f}", n)
            if k.kind == "baseline":
                tally.add("baselines")
                yield _line({"baseline": name, "count": n})
            else:
                tally.add("cells")
                yield _line({"key": name, "field": f, "count": n})
    zsets = [(key, dict.fromkeys(ms, 0)) for key, ms in part.indexes.items()]
    for key, scores in [*zsets, *part.rankings.items()]:
        name, k = kind_of(key)
        if k is None or k.kind not in ("index", "ranking") or not flt.period(k.parts):
            continue
        for member, score in scores.items():
            if not flt.member(k, member):
                continue
            tally.add(k.kind + " entries")
            if k.kind == "index":
                yield _line({"index": name, "member": member})
            elif score > MOST:
                raise TooLarge(name, f"member {member}", score)
            else:
                yield _line({"ranking": name, "member": member, "score": score})
    for key, blob in part.registers.items():
        name, k = kind_of(key)
        if k is not None and k.kind == "unique" and flt.period(k.parts):
            tally.add("sketches")
            yield _line({"unique": name, "registers": base64.b64encode(blob).decode()})
    for key, at in part.expire_at.items():
        name, k = kind_of(key)
        if k is not None and k.kind in ("counter", "unique") and flt.period(k.parts):
            tally.add("expiries")
            yield _line({"expire": name, "at": at})


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise BadRecord(f"{name!r} must be a non-empty string")
    return value


def _whole(record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    if type(value) is not int or not 0 <= value <= MOST:
        raise BadRecord(f"{name!r} must be a whole number from 0 to 2^53 - 1")
    return value


def _a_date(parts: tuple[str, ...]) -> bool:
    """Whether a period's parts (checked one by one) are a calendar's: no 30 February."""
    try:
        return not parts or bool(_days(parts))
    except ValueError:
        return False


def _key(record: dict[str, Any], name: str, kinds: tuple[str, ...]) -> tuple[str, Key]:
    key = _text(record, name)
    k = classify(key)
    if k is None or k.kind not in kinds:
        article = "an" if kinds[0][0] in "aeiou" else "a"
        raise BadRecord(f"{key!r} is not {article} {' or '.join(kinds)} key of tallyd's layout")
    if not _a_date(k.parts):
        raise BadRecord(f"{key!r} names a day that is no date")
    return key, k


def _an_id(key: str, k: Key) -> None:
    """A baseline's names must be an id's, escaped as tallyd escapes them: what the
    owner's route would take, and what a badge of the id reads."""
    account, event = unquote(k.account or ""), unquote(k.event or "")
    if escape(account) != k.account or escape(event) != k.event:
        raise BadRecord(f"{key!r} is not escaped as tallyd escapes names")
    try:
        check_id_names(account, event)
    except Rejected as exc:
        raise BadRecord(f"{key!r}: {exc.detail}") from None


# The fields of each kind of record: its kind's field first.
SHAPES = {
    "key": {"key", "field", "count"},
    "index": {"index", "member"},
    "ranking": {"ranking", "member", "score"},
    "unique": {"unique", "registers"},
    "expire": {"expire", "at"},
    "baseline": {"baseline", "count"},
}


class Record(NamedTuple):
    kind: str  # one of SHAPES, or "header" / "end"
    fields: dict[str, Any]


def parse(line: bytes) -> Record:
    """One line, checked; BadRecord says what is wrong with it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    if record.get("tallyd") == "export":
        if record.get("version") != VERSION:
            raise BadRecord(f"a header of version {record.get('version')!r}; this reads {VERSION}")
        return Record("header", record)
    if set(record) == {"end"}:
        end = record["end"]
        if not isinstance(end, dict):
            raise BadRecord("'end' must be an object")
        _whole(end, "records")
        return Record("end", record)
    kind = next((k for k in SHAPES if k in record), None)
    if kind is None or set(record) != SHAPES[kind]:
        shapes = ("{" + ", ".join(sorted(fields)) + "}" for fields in SHAPES.values())
        raise BadRecord("not a record: expected one of " + "; ".join(shapes))
    if kind == "key":
        key, k = _key(record, "key", ("counter", "funnel"))
        f = record.get("field")
        if not isinstance(f, str) or not f:
            raise BadRecord("'field' must be a non-empty string")
        if k.kind == "counter" and not (_part_ok(len(k.parts), f) and _a_date((*k.parts, f))):
            raise BadRecord(f"{f!r} is not a period field of {key!r}")
        _whole(record, "count")
    elif kind in ("index", "ranking"):
        _, k = _key(record, kind, (kind,))
        if not NAME.fullmatch(_text(record, "member")):
            raise BadRecord("'member' must be an escaped name, as in the keys")
        if kind == "ranking":
            _whole(record, "score")
    elif kind == "unique":
        _key(record, "unique", ("unique",))
        try:
            blob = base64.b64decode(_text(record, "registers"), validate=True)
            hll_codec.check(blob)
        except (binascii.Error, ValueError) as exc:
            raise BadRecord(f"'registers' must be base64 of a sketch: {exc}") from None
        record["registers"] = blob
    elif kind == "baseline":
        key, k = _key(record, "baseline", ("baseline",))
        _an_id(key, k)
        _whole(record, "count")
    else:
        _key(record, "expire", ("counter", "unique"))
        _whole(record, "at")
    return Record(kind, record)


def add(part: Contents, record: Record, prefix: str, mode: str) -> None:
    """Put a parsed record in `part`, under `prefix`: counts and scores met twice
    are summed ("add") or the last one kept ("set")."""
    r = record.fields
    if record.kind in ("key", "baseline"):
        # A baseline is the field `count` of a hash of its own: a cell as any other.
        key, f = (r["key"], r["field"]) if record.kind == "key" else (r["baseline"], BASELINE)
        fields = part.counters.setdefault(prefix + key, {})
        n = r["count"]
        fields[f] = fields.get(f, 0) + n if mode == "add" else n
    elif record.kind == "index":
        part.indexes.setdefault(prefix + r["index"], set()).add(r["member"])
    elif record.kind == "ranking":
        scores = part.rankings.setdefault(prefix + r["ranking"], {})
        m, n = r["member"], r["score"]
        scores[m] = scores.get(m, 0) + n if mode == "add" else n
    elif record.kind == "unique":
        key = prefix + r["unique"]
        blob = r["registers"]
        if key in part.registers:
            merged = hll_codec.merge(hll.load(part.registers[key]), hll.load(blob))
            blob = blob if mode == "set" else hll.dump(merged)
        part.registers[key] = blob
    elif record.kind == "expire":
        part.expire_at[prefix + r["expire"]] = r["at"]
