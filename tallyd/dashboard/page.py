"""`GET /`: the dashboard, its numbers rendered here so that it reads without JavaScript.

The state is in the query (`/?account=acme&event=pageview&period=2013/09`); every
value shown is escaped, since accounts, events and breakdown values are user input.
`app.js` then draws the bars, follows clicks without reloading and listens for
live updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from string import Template
from typing import Any
from urllib.parse import urlencode

import orjson

from tallyd.badges.params import METRICS
from tallyd.badges.render import STYLES
from tallyd.dashboard.assets import text, url
from tallyd.periods import Period
from tallyd.rules import ROLLUP
from tallyd.stats import Stats
from tallyd.web import Request, Response

HTML = b"text/html; charset=utf-8"
# Scripts and styles from this server only: markup that slipped through could run nothing.
HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
]
MONTHS = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)
UNITS = ("Year", "Month", "Day", "Hour", "Minute")
FUNNEL_FIELDS = ("property", "funnel_when", "funnel_rows")
TOP = 10
ACCOUNTS = 100
PAGE = Template(text("index.html"))


@dataclass(frozen=True)
class View:
    account: str
    event: str
    period: Period

    def link(self, period: Period) -> str:
        query = {"account": self.account, "event": self.event, "period": "/".join(period.parts)}
        return "/?" + urlencode(query, safe="/")


def heading(p: Period) -> str:
    """`All time`, `2013`, `September 2013`, `5 September 2013`, `5 September 2013, 14:00`."""
    if p.year is None:
        return "All time"
    if p.month is None:
        return str(p.year)
    month = f"{MONTHS[p.month - 1]} {p.year}"
    if p.day is None:
        return month
    day = f"{p.day} {month}"
    return day if p.hour is None else f"{day}, {p.hour:02d}:00"


def segment(p: Period, s: int) -> tuple[str, Period | None]:
    """A segment's label, and the period it opens (None for a minute)."""
    if p.year is None:
        return str(s), Period(s)
    if p.month is None:
        return MONTHS[s - 1][:3], Period(p.year, s)
    if p.day is None:
        return str(s), Period(p.year, p.month, s)
    if p.hour is None:
        return f"{s:02d}:00", Period(p.year, p.month, p.day, s)
    return f":{s:02d}", None


class Dashboard:
    def __init__(self, stats: Stats, breakdowns: dict[str, str]) -> None:
        self.stats = stats
        self.breakdowns = breakdowns

    async def page(self, req: Request) -> Response:
        q = req.query
        events = await self.stats.events()
        account = q.get("account") or ROLLUP
        event = q.get("event") or ("pageview" if "pageview" in events or not events else events[0])
        notice, status = "", 200
        try:
            period = await self._period(account, event, q.get("period"))
        except ValueError as exc:
            # The page the link would show by default, saying which one it is: a
            # year's table under a bad period's error read as that period's counts.
            period = await self._period(account, event, None)
            shown = f"{exc}: showing {heading(period)} instead"
            notice, status = f'<p class="notice" role="alert">{escape(shown)}</p>', 400
        view = View(account, event, period)
        answer = await self.stats.period(account, event, period)
        fields = {
            **await self._choices(view, events),
            **_counts(view, answer),
            **await self._funnel(view),
            **await self._top(event),
            "notice": notice,
            "badge_id": escape(account if account != ROLLUP else "owner/name"),
        }
        return Response(status, PAGE.substitute(fields).encode(), HTML, HEADERS)

    async def _period(self, account: str, event: str, asked: str | None) -> Period:
        """The period asked for; by default the latest year with counts, else this one."""
        if asked is not None:
            parts = asked.strip("/")
            return Period.from_strings(parts.split("/") if parts else [])
        years = (await self.stats.period(account, event, Period()))["data"]
        counted = [int(y) for y, n in years.items() if n]
        return Period(max(counted) if counted else self.stats.clock.now().year)

    async def _choices(self, view: View, events: list[str]) -> dict[str, str]:
        if view.event not in events:
            events = [view.event, *events]
        names = (await self.stats.accounts(view.event, "", "", ACCOUNTS))["accounts"]
        return {
            "title": escape(f"{view.account} · {view.event} · {heading(view.period)}"),
            "account": escape(view.account),
            "event": escape(view.event),
            "period": escape("/".join(view.period.parts)),
            "events": _options(events, view.event),
            "accounts": "".join(f'<option value="{escape(a)}">' for a in [ROLLUP, *names]),
            "breakdowns": escape(orjson.dumps(self.breakdowns).decode()),
            "style_options": _options(list(STYLES), STYLES[0]),
            "metric_options": _options(list(METRICS), METRICS[0]),
            "js": url("app.js"),
            "css": url("style.css"),
        }

    async def _funnel(self, view: View) -> dict[str, str]:
        prop = self.breakdowns.get(view.event)
        p = view.period
        if prop is None or p.year is None:
            return {"funnel_hidden": " hidden", **dict.fromkeys(FUNNEL_FIELDS, "")}
        of = Period(p.year, p.month)
        answer = await self.stats.funnel(view.account, view.event, of)
        total = answer["total"]
        rows = "".join(
            f"<tr><th scope=row>{escape(value)}</th><td>{n:,}</td><td>{n / total:.0%}</td></tr>"
            for value, n in answer["data"].items()
        )
        return {
            "funnel_hidden": "",
            "property": escape(prop),
            "funnel_when": escape(heading(of)),
            "funnel_rows": rows or '<tr><td colspan="3">none yet</td></tr>',
        }

    async def _top(self, event: str) -> dict[str, str]:
        now = self.stats.clock.now()
        day = (f"{now.year:04d}", f"{now.month:02d}", f"{now.day:02d}")
        out = {}
        for name, title, parts in (("top_day", "Today", day), ("top_month", "This month", day[:2])):
            ranked: list[dict[str, Any]] = await self.stats.top(event, parts, TOP)
            rows = "".join(
                f"<tr><th scope=row>{escape(r['account'])}</th><td>{r['count']:,}</td></tr>"
                for r in ranked
            )
            out[name] = (
                f'<table id="{name}"><caption>{title}</caption><tbody>'
                f"{rows or '<tr><td>none yet</td></tr>'}</tbody></table>"
            )
        return out


def _counts(view: View, answer: dict[str, Any]) -> dict[str, str]:
    p = view.period
    rows = []
    for key, n in answer["data"].items():
        label, opens = segment(p, int(key))
        cell = f'<a href="{escape(view.link(opens))}">{label}</a>' if opens else label
        rows.append(f"<tr><th scope=row>{cell}</th><td>{n:,}</td></tr>")
    crumbs = []
    up = p.up()
    while up is not None:
        crumbs.append(f'<a href="{escape(view.link(up))}">{escape(heading(up))}</a>')
        up = up.up()
    what = escape(f"{view.event} for {view.account}")
    return {
        "heading": escape(heading(p)),
        "crumbs": " &rsaquo; ".join(reversed(crumbs)),
        "caption": f"{what}, {escape(heading(p))}",
        "unit": UNITS[len(p.parts)],
        "rows": "".join(rows) or '<tr><td colspan="2">no counts yet</td></tr>',
        "total": f"{answer['total']:,}",
    }


def _options(values: list[str], chosen: str) -> str:
    return "".join(
        f"<option{' selected' if v == chosen else ''}>{escape(v)}</option>" for v in values
    )
