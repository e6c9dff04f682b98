"""`tallyd query`'s output: a period or a range as a bar chart, a table or CSV."""

from __future__ import annotations

from calendar import monthrange
from datetime import date, datetime, timedelta
from typing import Any

from tallyd.api import csv_text
from tallyd.stats import INTERVALS

WIDTH = 40
# The default interval of a range is the finest that draws at most this many rows.
MAX_ROWS = 100
# A bar's last cell in eighths: ▏ is 1/8 of a cell, █ a whole one.
EIGHTHS = " ▏▎▍▌▋▊▉"


def rows(answer: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, count) of a period answer's segments or a series answer's points."""
    if "points" in answer:
        return [(p["time"], p["count"]) for p in answer["points"]]
    return list(answer["data"].items())


def shown(name: str) -> str:
    """`name` as a terminal may print it: what is not printable (escape sequences,
    line breaks, direction overrides) written as Python escapes, `\\x1b`."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


def covered(answer: dict[str, Any]) -> str:
    """The first and last minutes a series counts: its points are whole intervals,
    so the range is widened to the start of the first and the end of the last."""
    first = answer["points"][0]["time"]
    last = datetime.fromisoformat(_padded(answer["points"][-1]["time"]))
    interval = answer["interval"]
    if interval == "year":
        last = last.replace(month=12)
    if interval in ("year", "month"):
        last = last.replace(day=monthrange(last.year, last.month)[1])
    if interval in ("year", "month", "day"):
        last = last.replace(hour=23)
    if interval != "minute":
        last = last.replace(minute=59)
    start = datetime.fromisoformat(_padded(first)).isoformat(timespec="minutes")
    return f"whole {interval}s: {start} .. {last.isoformat(timespec='minutes')}"


def _padded(label: str) -> str:
    """A series label (`2013`, `2013-09`, `2013-09-05`, ...) as ISO 8601 text of its start."""
    return {4: label + "-01-01", 7: label + "-01"}.get(len(label), label)


def title(answer: dict[str, Any]) -> str:
    head = f"{shown(answer['account'])} / {shown(answer['event'])} / "
    if "points" in answer:
        span = (
            answer["from"]
            if answer["from"] == answer["to"]
            else answer["from"] + " .. " + answer["to"]
        )
        return f"{head}{span} by {answer['interval']} ({answer['timezone']})\n{covered(answer)}"
    # As the periods are written everywhere else: 2013-09-05 14h, zero-padded.
    y, m, d, h = (answer[k] for k in ("year", "month", "day", "hour"))
    when = "" if y is None else f"{y:04d}"
    when += "" if m is None else f"-{m:02d}"
    when += "" if d is None else f"-{d:02d}"
    when += "" if h is None else f" {h:02d}h"
    return head + (when or "all time")


def bar(n: int, peak: int) -> str:
    """`n` against `peak` in Unicode blocks, WIDTH cells at most; a count above zero
    always shows at least an eighth of a cell."""
    if n <= 0 or peak <= 0:
        return ""
    eighths = max(1, round(n / peak * WIDTH * 8))
    whole, rest = divmod(eighths, 8)
    return "█" * whole + (EIGHTHS[rest] if rest else "")


def render(answer: dict[str, Any], bars: bool = True) -> str:
    """A title, one row per segment or point (label, count and, with `bars`, a bar
    scaled to the largest), and the total."""
    data = rows(answer)
    peak = max((n for _, n in data), default=0)
    label_w = max((len(k) for k, _ in data), default=1)
    count_w = max((len(f"{n:,}") for _, n in data), default=1)
    lines = [title(answer), ""]
    for label, n in data:
        row = f"{label:>{label_w}}  {n:>{count_w},}"
        lines.append(f"{row}  {bar(n, peak)}".rstrip() if bars else row)
    lines += ["", f"total {answer['total']:,}"]
    return "\n".join(lines) + "\n"


def csv_of(answer: dict[str, Any]) -> str:
    """The API's `format=csv` for a series; `segment,count` for a period."""
    return csv_text(("time" if "points" in answer else "segment", "count"), rows(answer))


def default_interval(start: datetime, end: datetime, dates: bool = False) -> str:
    """The finest interval giving at most MAX_ROWS points from `start` to `end`; with
    `dates` (both ends given as days), a day at the finest."""
    minute = end.replace(second=0, microsecond=0) - start.replace(second=0, microsecond=0)
    hour = end.replace(minute=0, second=0, microsecond=0) - start.replace(
        minute=0, second=0, microsecond=0
    )
    points = {
        "minute": minute // timedelta(minutes=1) + 1,
        "hour": hour // timedelta(hours=1) + 1,
        "day": (end.date() - start.date()).days + 1,
        "month": (end.year - start.year) * 12 + end.month - start.month + 1,
        "year": 0,
    }
    usable = INTERVALS[INTERVALS.index("day") :] if dates else INTERVALS
    return next(i for i in usable if points[i] <= MAX_ROWS)


def is_date(text: str) -> bool:
    """Whether `text` names a day (2013-09-05) rather than a time in it."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
