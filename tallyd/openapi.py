"""The pieces of the OpenAPI document served at `/openapi.json`.

Its `paths` come from the route table (`tallyd/routes.py`, through
`router.Router.document`): each route carries its operation, built with the
helpers here, so that no route is undocumented and no document is unrouted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tallyd import __version__
from tallyd.api import MAX_PAGE
from tallyd.badges.http import ENDPOINT_CACHE_SECONDS
from tallyd.badges.logos import MAX_LOGO_BYTES
from tallyd.badges.params import COUNTS, FORMATS, MAX_BASE, MAX_LABEL, METRICS
from tallyd.badges.render import STYLES, THEMES
from tallyd.dashboard.assets import TYPES
from tallyd.dashboard.live import HEARTBEAT, MAX_STREAMS, MIN_GAP
from tallyd.periods import MAX_YEAR, MIN_YEAR
from tallyd.rules import MAX_NAME, MAX_TIME, ROLLUP
from tallyd.stats import INTERVALS, MAX_SERIES_POINTS
from tallyd.web import CALLBACK, INGEST, MAX_CALLBACK


def param(
    name: str,
    where: str = "query",
    required: bool = False,
    description: str | None = None,
    **schema: Any,
) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": {"type": "string", **schema},
    }
    if description:
        param["description"] = description
    return param


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_STR = {"schema": {"type": "string"}}
# On every answer of the read API and badges (--cors-origin; absent with `none`).
_CORS = {"Access-Control-Allow-Origin": {**_STR, "description": "--cors-origin (default *)"}}
_ERR = {"description": "error", "content": _json(_ref("Error"))}
_READ_ERR = {**_ERR, "headers": _CORS}
# What the server takes as a JSONP callback (web.check_callback), and what it answers.
_CB = param(
    "callback",
    description="wrap the JSON answer as JSONP, answered as application/javascript",
    pattern=f"^(?:{CALLBACK.pattern})$",
    maxLength=MAX_CALLBACK,
)
_JSONP = {"application/javascript": {"schema": {"type": "string", "pattern": r"^/\*\*/"}}}


def preflight(share: str, methods: bytes, path: list[str]) -> dict[str, Any]:
    """The OPTIONS operation of a path with a CORS policy (`share`), whose path
    parameters are named in `path`."""
    setting = "--cors-ingest (default none)" if share == INGEST else "--cors-origin"
    allow = {
        "Allow": _STR,
        "Access-Control-Allow-Origin": {**_STR, "description": f"{setting}; absent when none"},
        "Access-Control-Allow-Methods": {**_STR, "description": methods.decode()},
        "Access-Control-Allow-Headers": {
            **_STR,
            "description": "the Access-Control-Request-Headers asked for",
        },
        "Access-Control-Max-Age": {"schema": {"type": "integer"}},
    }
    operation: dict[str, Any] = {
        "summary": "CORS preflight",
        "responses": {"204": {"description": "what may be asked", "headers": allow}},
    }
    if path:
        # What may be asked does not depend on which account or year: a preflight
        # answers alike for any value, and the request itself is checked when it comes.
        any_value = "any value: a preflight does not check it"
        operation["parameters"] = [param(name, "path", description=any_value) for name in path]
    return operation


def read(
    summary: str,
    query: list[dict[str, Any]],
    schema: str,
    other: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The GET operation of a read of the stats API: JSON (JSONP with `callback`),
    errors as JSON."""
    content = {**_json(_ref(schema)), **_JSONP, **(other or {})}
    ok = {"description": "OK", "headers": _CORS, "content": content}
    return {
        "summary": summary,
        "parameters": [*query, _CB],
        "responses": {"200": ok, "400": _READ_ERR, "404": _READ_ERR, "503": _READ_ERR},
    }


# A name as the API takes it in a path: any text, percent-encoded (`owner%2Fname`).
ACC = param("account", "path", minLength=1)
EV = param("event", "path", minLength=1)
Y = param("year", "path", type="integer", minimum=MIN_YEAR, maximum=MAX_YEAR)
M = param("month", "path", type="integer", minimum=1, maximum=12)
D = param(
    "day",
    "path",
    description="past the month's last day: 400",
    type="integer",
    minimum=1,
    maximum=31,
)
H = param("hour", "path", type="integer", minimum=0, maximum=23)
# Dates as the read API takes them: real days of 1970..9999 (no April 31), so that a
# date the document allows is one the server answers.
_YEAR = "(?:19[7-9][0-9]|[2-9][0-9]{3})"
_LEAP = (
    "(?:19(?:7[26]|8[048]|9[26])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"
    "|(?:[2468][048]|[3579][26])00)"
)


def _number(lo: int, hi: int, width: int, exact: bool) -> str:
    """`lo..hi` written in `width` digits (`exact`), or in up to `width` with leading zeros."""
    forms = [
        f"{n:0{width}d}" if exact else f"0{{0,{width - len(str(n))}}}{n}" for n in range(lo, hi + 1)
    ]
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def _days(sep: str, part: Callable[[int, int], str], rest: str = "", optional: bool = False) -> str:
    """A month and a day in it, joined by `sep`, in a common year; `rest` may follow the
    day; with `optional`, the day may be left out."""
    by_length = {31: (1, 3, 5, 7, 8, 10, 12), 30: (4, 6, 9, 11), 28: (2,)}
    forms = []
    for length, months in by_length.items():
        month = "(?:" + "|".join(part(m, m) for m in months) + ")"
        forms.append(f"{month}(?:{sep}{part(1, length)}{rest})" + ("?" if optional else ""))
    return "(?:" + "|".join(forms) + ")"


def _iso(lo: int, hi: int) -> str:
    return _number(lo, hi, 2, exact=True)


_DAY = f"(?:{_YEAR}-{_days('-', _iso)}|{_LEAP}-02-29)"
_DATE_TIME = (
    f"^{_DAY}(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?"
    "(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?)?$"
)
# Empty is as absent (today, or now).
_DAY_OR_MONTH = f"^(?:{_YEAR}-(?:0[1-9]|1[0-2])|{_DAY}|)$"


def _part(lo: int, hi: int) -> str:
    # A part of a dashboard period: 1 to 4 digits (`2`, `02`), as Period.from_strings reads.
    return _number(lo, hi, 4, exact=False)


_HOUR = f"(?:/{_part(0, 23)})?"
# year[/month[/day[/hour]]], slashes around it ignored; empty: all time.
_PERIOD = (
    f"^/*(?:{_YEAR}(?:/{_days('/', _part, _HOUR, optional=True)})?"
    f"|{_LEAP}/{_part(2, 2)}/{_part(29, 29)}{_HOUR})?/*$"
)
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "empty: as absent",
    "schema": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, {"const": ""}]},
}
ID = param(
    "id",
    "path",
    description="the counted account; may contain /; empty, over 200 characters or with "
    "control characters: an error badge",
)


def _choice(name: str, values: list[str], note: str = "") -> dict[str, Any]:
    """A badge parameter with a set of values; any other is drawn as an error badge."""
    listed = ", ".join(values)
    described = f"one of {listed}{note}; any other value: an error badge (bad_{name})"
    found = param(name, description=described)
    found["schema"]["examples"] = values
    return found


REPO = param("repo", description="the counted account (owner/name); absent: an error badge")
# A badge answers an image whatever its parameters (see _BADGE_NOTE): each takes any
# text, and what it cannot use is drawn as an error badge saying why, with status 200.
_BADGE_PARAMS = [
    param("label", description=f"at most {MAX_LABEL} characters, else an error badge"),
    param("color", description="a shields colour name or hex; else an error badge"),
    param("label_color", description="as color"),
    _choice("style", list(STYLES)),
    param(
        "logo",
        description="a simple-icons name (github) or a data:image/svg+xml;base64 URL of "
        f"at most {MAX_LOGO_BYTES} bytes of plain SVG; else an error badge",
    ),
    param("logo_color", description="the named logo's colour (also logoColor)"),
    _choice("theme", list(THEMES), " (auto: follows the reader's dark mode)"),
    _choice("metric", list(METRICS)),
    _choice("format", list(FORMATS)),
    param("base", description=f"a whole number 0..{MAX_BASE} added to the figure"),
    _choice("increment", ["0", "1"], " (default: 1 for .svg, 0 for .json)"),
    param("event", description="default: hit"),
    param(
        "tz",
        description="an IANA time zone (Europe/Madrid) for today, week, month, year, "
        "7d, 30d and the sparklines; default: the server's --timezone",
    ),
    _choice(
        "count",
        list(COUNTS),
        " (github: only views through GitHub's image proxy, github-camo, count)",
    ),
]
_BADGE_HEADERS = {
    **_CORS,
    "Cache-Control": _STR,
    "Expires": _STR,
    "X-Tallyd-Error": {
        **_STR,
        "description": "on an error badge only: why (bad_style, missing_repo, not_found, "
        "store_unavailable, overloaded, ...)",
    },
}
_BADGE_NOTE = (
    "Errors are answered 200 as well, drawn as an error badge (red for bad input, grey "
    "when the store is down or the server overloaded), because GitHub's image proxy "
    "shows no image for any other status."
)


def badge(summary: str, query: list[dict[str, Any]], media: dict[str, Any]) -> dict[str, Any]:
    """The GET operation of a badge URL."""
    return {
        "summary": summary,
        "description": _BADGE_NOTE,
        "parameters": [*query, *_BADGE_PARAMS],
        "responses": {
            "200": {"description": "the badge", "headers": _BADGE_HEADERS, "content": media},
            "405": _ERR,
        },
    }


SVG = {"image/svg+xml": {"schema": {"type": "string"}}}
ENDPOINT = _json(_ref("Endpoint"))
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_NAMES = {"type": "array", "items": {"type": "string"}}
_PART = {"type": ["integer", "null"]}
# An account or event name (events.check_name); an account is no rollup (rules.reserved).
_EVENT_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
}
_ACCOUNT = {**_EVENT_NAME, "not": {"anyOf": [{"const": ROLLUP}, {"pattern": "/\\*$"}]}}


def _named_by(first: str, then: str) -> list[dict[str, Any]]:
    """An event's name: member `first` if it is there and not null, else `then`."""
    return [
        {"required": [first], "properties": {first: _EVENT_NAME}},
        {"required": [then], "properties": {first: {"type": "null"}, then: _EVENT_NAME}},
    ]


# Times every zone agrees are within 1970..9999; the description says what else is read.
# An account and an event as a route that writes takes them (events.check_name, no
# rollup): the owner actions refuse anything else with a 400.
ACCOUNT_NAME = {"name": "account", "in": "path", "required": True, "schema": _ACCOUNT}
EVENT_NAME = {"name": "event", "in": "path", "required": True, "schema": _EVENT_NAME}
_TIME = (
    "^(?:19[89][0-9]|[2-8][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    "(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.][0-9]{1,9})?)?"
    "(?:Z|[+-](?:0[0-9]|1[0-4]):?[0-5][0-9])?)?$"
)


_TEXT = {"schema": {"type": "string"}}
_HTML = {"text/html": _TEXT}
_PAGE_HEADERS = {"Cache-Control": _STR, "Content-Security-Policy": _STR}
DASHBOARD: dict[str, Any] = {
    "summary": "The dashboard: a period's counts as an HTML table; with JavaScript, bars, "
    "drill-down and live updates",
    "parameters": [
        param("account", description="default: all"),
        param("event", description="default: pageview, else the first event type"),
        param(
            "period",
            description="year[/month[/day[/hour]]], like 2013/09 (a day of the month, an "
            "hour 0..23); empty: all time; absent: the latest year with counts",
            pattern=_PERIOD,
        ),
    ],
    "responses": {
        "200": {"description": "the page", "headers": _PAGE_HEADERS, "content": _HTML},
        "400": {
            "description": "the page, saying why the period cannot be shown",
            "headers": _PAGE_HEADERS,
            "content": _HTML,
        },
        "503": _ERR,
    },
}
ASSET: dict[str, Any] = {
    "summary": "The dashboard's script and style sheet",
    "parameters": [
        param("asset", "path", enum=list(TYPES)),
        param(
            "v",
            description="the file's version, as the page links it: then cached for good "
            "(immutable); else revalidated with its ETag",
        ),
    ],
    "responses": {
        "200": {
            "description": "the file",
            "headers": {"Cache-Control": _STR, "ETag": _STR},
            "content": {"text/javascript": _TEXT, "text/css": _TEXT},
        },
        "304": {"description": "not modified (If-None-Match)"},
        "404": _ERR,
    },
}
# Each event of the stream, as an event-stream reader sees it (comments and the first
# `retry:` carry no data, so they are no events).
_LIVE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "flush"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["batch", "time"],
                "additionalProperties": False,
                "properties": {
                    "batch": {"type": "integer", "minimum": 1},
                    "time": {"type": "number"},
                },
            },
        },
    },
}
LIVE: dict[str, Any] = {
    "summary": "Live updates: server-sent events while events are counted",
    "description": f"An `event: flush` after each batch written to the store (at most one "
    f"per {MIN_GAP:g} s: closer flushes are sent as one), with `data` "
    '`{"batch": N, "time": UNIX_SECONDS}`; a comment every '
    f"{HEARTBEAT:g} s otherwise. The stream never ends on its own; it ends when the "
    f"server stops. At most {MAX_STREAMS} streams at once.",
    "responses": {
        "200": {
            "description": "the stream",
            "headers": {**_CORS, "Cache-Control": _STR, "X-Accel-Buffering": _STR},
            "content": {"text/event-stream": {"schema": _LIVE_EVENT}},
        },
        "503": {**_ERR, "headers": {**_CORS, "Retry-After": _STR}},
    },
}


# A batch is answered 202 when one of its items at least is an event: the others are
# refused one by one, named by index in the answer's `errors`.
_BATCH = {"type": "array", "minItems": 1, "contains": _ref("Event")}
_BATCH_NOTE = (
    "a batch: counted when one item at least is an Event; every other item is refused, "
    "named by its index in `errors` (when none is an Event: 400)"
)
EVENTS: dict[str, Any] = {
    "summary": "Count events: one JSON object, a JSON array, or NDJSON",
    "parameters": [param("wait", enum=["flush"])],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref("Event"), {**_BATCH, "description": _BATCH_NOTE}]}
            },
            "application/x-ndjson": {
                "schema": {
                    **_BATCH,
                    "description": f"one item a line (blank lines are no item, and take "
                    f"no index); {_BATCH_NOTE}",
                }
            },
        },
    },
    "responses": {
        "202": {"description": "accepted", "content": _json(_ref("IngestResult"))},
        "400": {
            "description": "no event could be counted (then also the "
            "IngestResult's figures), or a bad request",
            "content": _json(_ref("Error")),
        },
        "413": _ERR,
        "415": _ERR,
        "429": {
            "description": "past --max-new-ids-per-minute: the events that fit "
            "are counted, `resend` lists the index of every one refused "
            "(new_name_limit) to send again after Retry-After (the seconds until as "
            "many new names as events refused fit, at most ten seconds' worth: an "
            "estimate, as an event may bring two new names or share one)",
            "content": _json(_ref("IngestResult")),
        },
        "503": _ERR,
    },
}
SERIES_QUERY = [
    param("account", required=True, minLength=1),
    param("event", required=True, minLength=1),
    param(
        "from",
        required=True,
        description="ISO 8601 date or date-time (in the server's --timezone; "
        f"with an offset, converted to it); from..to is at most {MAX_SERIES_POINTS} "
        "intervals, else 400",
        pattern=_DATE_TIME,
    ),
    param("to", description="as from; empty or absent: now", pattern=f"{_DATE_TIME}|^$"),
    param(
        "interval",
        description="each point counts its whole interval: from=2013-08-25 with "
        "interval=month starts with all of August",
        enum=list(INTERVALS),
    ),
    param("format", enum=["json", "csv"]),
]
CSV = {"text/csv": {"schema": {"type": "string"}}}
ACCOUNTS_QUERY = [
    param("event", required=True, minLength=1),
    param("prefix"),
    param("after"),
    _LIMIT,
]
TOP_QUERY = [
    param("event", required=True, minLength=1),
    param("period", enum=["day", "month"]),
    param(
        "date",
        description="a day (2013-09-05) for period=day, a month (2013-09) or a "
        "day in it for period=month; empty or absent: today",
        pattern=_DAY_OR_MONTH,
    ),
    _LIMIT,
]
SELF: dict[str, Any] = {
    "summary": "This document",
    "responses": {
        "200": {
            "description": "OpenAPI 3.1",
            "headers": _CORS,
            "content": _json({"type": "object", "required": ["openapi", "paths"]}),
        }
    },
}
HEALTH: dict[str, Any] = {
    "summary": "Liveness and store health",
    "responses": {
        "200": {"description": "ok", "content": _json(_ref("Health"))},
        "503": {
            "description": "the store fails",
            "content": _json({"allOf": [_ref("Health"), _ref("Error")]}),
        },
    },
}
PROMETHEUS: dict[str, Any] = {
    "summary": "Prometheus metrics",
    "responses": {
        "200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}


def document(paths: dict[str, Any]) -> dict[str, Any]:
    """The whole document, for the paths of a route table (`Router.document`)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tallyd",
            "version": __version__,
            "description": (
                "Event counts per account and event type, by period. HEAD is answered"
                " wherever GET is: the same status and headers, no body (a badge's HEAD"
                " counts no view). Any path may also be refused before its head is read"
                " whole, with the Error schema: 400 (not HTTP/1.x, a bad Host or"
                " framing), 408 (--header-timeout), 413, 414 (a target over 8 KiB),"
                " 431 (headers over 64 KiB), 501 (a Transfer-Encoding but chunked),"
                " 503 (--max-connections, --max-body-buffered; with Retry-After) and"
                " 505 (an HTTP version but 1.0 and 1.1)."
            ),
        },
        "paths": paths,
        "components": COMPONENTS,
    }


# The owner routes' bearer token (--admin-token, tallyd/owner.py).
ADMIN_SCHEME = "adminToken"
COMPONENTS: dict[str, Any] = {
    "securitySchemes": {ADMIN_SCHEME: {"type": "http", "scheme": "bearer"}},
    "schemas": {
        "Endpoint": {
            "type": "object",
            "description": "shields.io's endpoint badge document; no other keys "
            "(the logo ones only when a logo is asked for)",
            "required": [
                "schemaVersion",
                "label",
                "message",
                "color",
                "labelColor",
                "isError",
                "cacheSeconds",
            ],
            "additionalProperties": False,
            "properties": {
                "schemaVersion": {"const": 1},
                "label": {"type": "string"},
                "message": {"type": "string", "minLength": 1},
                "color": {"type": "string"},
                "labelColor": {"type": "string"},
                "isError": {"type": "boolean"},
                "cacheSeconds": {"type": "integer", "minimum": ENDPOINT_CACHE_SECONDS},
                "namedLogo": {"type": "string", "description": "a simple-icons name"},
                "logoColor": {"type": "string"},
                "logoSvg": {"type": "string", "description": "a custom logo's SVG"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
        "Event": {
            "type": "object",
            "description": "the Bootic shape (type, data.account) or the flat one "
            "(event, account); time: Unix seconds, or ISO 8601 / RFC 3339 (a fraction "
            "up to nanoseconds, Z, +02:00 or +0200, T or a space), or Ruby's "
            "2013-09-05 09:04:16 -0400, from 1970-01-01T00:00:00Z to 9999-12-31T09:59:59Z "
            "(past it, a zone 14 hours ahead of UTC would be in year 10000)",
            # As events.parse reads it: the account is data.account unless that is
            # absent or null, then `account`; the name is the shape's own member
            # (`type` for the first, `event` for the flat one) unless absent or null,
            # then the other.
            "anyOf": [
                {
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "object",
                            "required": ["account"],
                            "properties": {"account": _ACCOUNT},
                        }
                    },
                    "anyOf": _named_by("type", "event"),
                },
                {
                    "required": ["account"],
                    "properties": {
                        "account": _ACCOUNT,
                        "data": {
                            "not": {
                                "type": "object",
                                "required": ["account"],
                                "properties": {"account": {"not": {"type": "null"}}},
                            }
                        },
                    },
                    "anyOf": _named_by("event", "type"),
                },
            ],
            "properties": {
                "time": {
                    "oneOf": [
                        {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                        {"type": "string", "pattern": _TIME},
                        {"type": "null", "description": "as absent: the time it is received"},
                    ]
                },
                "id": {
                    "oneOf": [
                        {"type": "string", "maxLength": MAX_NAME},
                        {"type": "integer"},
                        {"type": "null"},
                    ],
                    "description": "the same account and id within --dedup-window "
                    "count once; empty or null: no id",
                },
                "seq": {
                    "description": "a publisher's sequence number: on the ZeroMQ bus an "
                    "integer is checked for gaps; over HTTP, and of any other type, it is "
                    "ignored (never a reason to refuse an event)"
                },
            },
        },
        "IngestResult": {
            "type": "object",
            "required": ["accepted", "duplicates", "rejected", "errors"],
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
                "rejected": {"type": "integer", "minimum": 0},
                "stored": {
                    "type": "boolean",
                    "description": "with wait=flush: whether the events are in the store",
                },
                "error": {"type": "string", "description": "on a 429: new_name_limit"},
                "resend": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "description": "on a 429: the index of every event refused by "
                    "--max-new-ids-per-minute, to send again after Retry-After",
                },
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "reason", "detail"],
                        "properties": {
                            "index": {"type": "integer"},
                            "reason": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Period": {
            "type": "object",
            "required": [
                "account",
                "event",
                "year",
                "month",
                "day",
                "hour",
                "total",
                "data",
                "links",
            ],
            "properties": {
                "account": {"type": "string"},
                "event": {"type": "string"},
                "year": _PART,
                "month": _PART,
                "day": _PART,
                "hour": _PART,
                "total": {"type": "integer", "minimum": 0},
                "data": _COUNTS,
                "links": {
                    "type": "object",
                    "required": ["self", "up", "segments"],
                    "properties": {
                        "self": {"type": "string"},
                        "up": {"type": "string"},
                        "segments": _NAMES,
                    },
                },
            },
        },
        "Funnel": {
            "type": "object",
            "required": ["account", "event", "year", "month", "total", "data"],
            "properties": {
                "account": {"type": "string"},
                "event": {"type": "string"},
                "year": {"type": "integer"},
                "month": _PART,
                "total": {"type": "integer", "minimum": 0},
                "data": _COUNTS,
            },
        },
        "Seed": {
            "type": "object",
            "description": "the Bootic Go aggregator's answer (--seed-api, docs/seed-api.md): "
            'the URL\'s parts as strings ("" where absent), links to the periods below '
            "that hold counts, data sparse with unpadded keys (null at the prefix itself)",
            "required": ["type", "account", "event", "year", "month", "day", "links", "data"],
            "properties": {
                "type": {"enum": ["", "track", "funnels"]},
                "account": {"type": "string"},
                "event": {"type": "string"},
                "year": {"type": "string"},
                "month": {"type": "string"},
                "day": {"type": "string"},
                "links": {"type": "array", "items": {"type": "string", "format": "uri"}},
                "data": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "integer", "minimum": 1},
                },
            },
        },
        "Events": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": _NAMES},
        },
        "AccountEvents": {
            "type": "object",
            "required": ["account", "events"],
            "properties": {"account": {"type": "string"}, "events": _NAMES},
        },
        "Series": {
            "type": "object",
            "required": ["account", "event", "interval", "from", "to", "total", "points"],
            "properties": {
                "account": {"type": "string"},
                "event": {"type": "string"},
                "interval": {"enum": list(INTERVALS)},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "timezone": {"type": "string"},
                "total": {"type": "integer", "minimum": 0},
                "points": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["time", "count"],
                        "properties": {
                            "time": {"type": "string"},
                            "count": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
        "Accounts": {
            "type": "object",
            "required": ["event", "prefix", "accounts", "next"],
            "properties": {
                "event": {"type": "string"},
                "prefix": {"type": "string"},
                "accounts": _NAMES,
                "next": {
                    "type": ["string", "null"],
                    "description": "the after= of the next page; null on the last",
                },
            },
        },
        "Top": {
            "type": "object",
            "required": ["event", "period", "date", "top"],
            "properties": {
                "event": {"type": "string"},
                "period": {"enum": ["day", "month"]},
                "date": {"type": "string"},
                "top": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["account", "count"],
                        "properties": {
                            "account": {"type": "string"},
                            "count": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "store", "pending_cells", "last_flush", "time"],
            "properties": {
                "status": {"enum": ["ok", "degraded"]},
                "store": {"type": "string"},
                "pending_cells": {"type": "integer", "minimum": 0},
                "last_flush": {"type": ["number", "null"]},
                "time": {"type": "number"},
            },
        },
    },
}
