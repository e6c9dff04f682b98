"""The stats JSON API (SPEC §5): the first seed's paths, kept exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tallyd.periods import Clock, Period
from tallyd.stats import INTERVALS, Stats
from tallyd.web import NO_STORE, HTTPError, Request, Response, json_response

MAX_PAGE = 1000
DEFAULT_TOP = 10


def _period(parts: list[str]) -> Period:
    try:
        return Period.from_strings(parts)
    except ValueError as exc:
        raise HTTPError(400, "bad_period", str(exc)) from None


def _int(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise HTTPError(400, f"bad_{name}", f"{name} must be a whole number {lo}..{hi}")
    return int(raw)


def _required(q: dict[str, str], name: str) -> str:
    value = q.get(name)
    if not value:
        raise HTTPError(400, f"missing_{name}", f"the query parameter {name} is required")
    return value


class BadRange(ValueError):
    """A series asked for with a bad `from`, `to`, interval or range; `error` is its code."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error


def when(text: str, clock: Clock, name: str) -> datetime:
    """A date or date-time in the configured zone, as its naive wall-clock time; an
    explicit offset is converted (so `from` and `to` compare whichever has one)."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BadRange(f"bad_{name}", f"{name} must be ISO 8601, like 2013-09-05") from None
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(clock.tz).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise BadRange(f"bad_{name}", f"{name} is out of range") from None
    return dt


async def series_of(
    stats: Stats, account: str, event: str, start: str, end: str | None, interval: str
) -> dict[str, Any]:
    """The series answer for `from`/`to` as given (`to` absent: now); BadRange if bad.
    Shared by the API and `tallyd query --from`."""
    if interval not in INTERVALS:
        raise BadRange("bad_interval", f"interval must be one of {', '.join(INTERVALS)}")
    first = when(start, stats.clock, "from")
    last = when(end or stats.clock.now().replace(tzinfo=None).isoformat(), stats.clock, "to")
    try:
        return await stats.series(account, event, first, last, interval)
    except ValueError as exc:
        raise BadRange("bad_range", str(exc)) from None
    except OverflowError:
        # Stepping from the last interval of year 9999 leaves what datetime can hold.
        raise BadRange("bad_range", "the range reaches past year 9999") from None


def csv_text(header: tuple[str, str], rows: Iterable[tuple[str, int]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


async def track(stats: Stats, req: Request, rest: list[str]) -> Response:
    """`/api/stats/track[/{account}[/{event}[/Y[/M[/D[/H]]]]]]`."""
    if not rest:
        return _ok({"events": await stats.events()})
    if len(rest) == 1:
        return _ok({"account": rest[0], "events": await stats.events(rest[0])})
    account, event, *parts = rest
    return _ok(await stats.period(account, event, _period(parts)))


async def funnels(stats: Stats, req: Request, rest: list[str]) -> Response:
    """`/api/stats/funnels/{account}/{event}/{year}[/{month}]`."""
    if len(rest) not in (3, 4):
        raise HTTPError(
            404, "not_found", "use /api/stats/funnels/{account}/{event}/{year}[/{month}]"
        )
    account, event, *parts = rest
    return _ok(await stats.funnel(account, event, _period(parts)))


async def series(stats: Stats, req: Request) -> Response:
    """`/api/stats/series?account=&event=&from=&to=&interval=[&format=csv]`."""
    q = req.query
    account, event = _required(q, "account"), _required(q, "event")
    interval = q.get("interval", "day")
    try:
        answer = await series_of(stats, account, event, _required(q, "from"), q.get("to"), interval)
    except BadRange as exc:
        raise HTTPError(400, exc.error, str(exc)) from None
    fmt = q.get("format", "json")
    if fmt == "csv":
        body = csv_text(("time", "count"), ((p["time"], p["count"]) for p in answer["points"]))
        return Response(200, body.encode(), b"text/csv; charset=utf-8", [NO_STORE])
    if fmt != "json":
        raise HTTPError(400, "bad_format", "format must be json or csv")
    return _ok(answer)


async def accounts(stats: Stats, req: Request) -> Response:
    """`/api/accounts?event=&prefix=&after=&limit=`, in name order."""
    q = req.query
    event = _required(q, "event")
    limit = _int(q, "limit", 100, 1, MAX_PAGE)
    return _ok(await stats.accounts(event, q.get("prefix", ""), q.get("after", ""), limit))


async def top(stats: Stats, req: Request) -> Response:
    """`/api/top?event=&period=day|month&date=&limit=`."""
    q = req.query
    event = _required(q, "event")
    period = q.get("period", "day")
    if period not in ("day", "month"):
        raise HTTPError(400, "bad_period", "period must be day or month")
    date = q.get("date") or stats.clock.now().strftime("%Y-%m-%d")
    pieces = date.split("-")
    want = 3 if period == "day" else 2
    if len(pieces) < want:
        raise HTTPError(
            400, "bad_date", f"date must look like {'2013-09-05' if want == 3 else '2013-09'}"
        )
    p = _period(pieces[:want])
    limit = _int(q, "limit", DEFAULT_TOP, 1, MAX_PAGE)
    ranked = await stats.top(event, p.parts, limit)
    return _ok({"event": event, "period": period, "date": "-".join(p.parts), "top": ranked})


def _ok(obj: Any) -> Response:
    return json_response(obj, 200, [NO_STORE])
