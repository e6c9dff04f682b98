"""The OpenAPI document served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

from tallyd import __version__
from tallyd.badges.http import ENDPOINT_CACHE_SECONDS
from tallyd.badges.logos import MAX_LOGO_BYTES
from tallyd.badges.params import COUNTS, FORMATS, MAX_LABEL, METRICS
from tallyd.badges.render import STYLES, THEMES
from tallyd.web import INGEST_METHODS, READ_METHODS


def _param(
    name: str, where: str = "query", required: bool = False, **schema: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema or {"type": "string"},
    }


_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_CB = _param("callback", pattern=r"^[A-Za-z_$][A-Za-z0-9_$.]*$")
_STR = {"schema": {"type": "string"}}
# On every answer of the read API and badges (--cors-origin; absent with `none`).
_CORS = {"Access-Control-Allow-Origin": {**_STR, "description": "--cors-origin (default *)"}}


def _preflight(methods: bytes, setting: str) -> dict[str, Any]:
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
    return {
        "summary": "CORS preflight",
        "responses": {"204": {"description": "what may be asked", "headers": allow}},
    }


_READ_PREFLIGHT = _preflight(READ_METHODS, "--cors-origin")


def _get(summary: str, params: list[dict[str, Any]], schema: str | None = None) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK", "headers": _CORS}
    if schema:
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    err = {**_ERR, "headers": _CORS}
    return {
        "get": {
            "summary": summary,
            "parameters": [*params, _CB],
            "responses": {"200": ok, "400": err, "404": err, "503": err},
        },
        "options": _READ_PREFLIGHT,
    }


_ACC = _param("account", "path")
_EV = _param("event", "path")
_Y = _param("year", "path", type="integer", minimum=1970)
_M = _param("month", "path", type="integer", minimum=1, maximum=12)
_D = _param("day", "path", type="integer", minimum=1, maximum=31)
_H = _param("hour", "path", type="integer", minimum=0, maximum=23)
_T = "/api/stats/track/{account}/{event}"
_ID = _param("id", "path", description="the counted account; may contain /")
_BADGE_PARAMS = [
    _param("label", maxLength=MAX_LABEL),
    _param("color"),
    _param("label_color"),
    _param("style", enum=list(STYLES)),
    _param(
        "logo",
        description="a simple-icons name (github) or a data:image/svg+xml;base64 URL of "
        f"at most {MAX_LOGO_BYTES} bytes of plain SVG; else an error badge",
    ),
    _param("logo_color", description="the named logo's colour (also logoColor)"),
    _param("theme", enum=list(THEMES), description="auto: follows the reader's dark mode"),
    _param("metric", enum=list(METRICS)),
    _param("format", enum=list(FORMATS)),
    _param("base", type="integer", minimum=0),
    _param("increment", enum=["0", "1"], description="default: 1 for .svg, 0 for .json"),
    _param("event"),
    _param(
        "tz",
        description="an IANA time zone (Europe/Madrid) for today, week, month, year, "
        "7d, 30d and the sparklines; default: the server's --timezone",
    ),
    _param(
        "count",
        enum=list(COUNTS),
        description="github: only views through GitHub's image proxy (github-camo) count",
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


def _badge(summary: str, params: list[dict[str, Any]], media: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "description": _BADGE_NOTE,
            "parameters": [*params, *_BADGE_PARAMS],
            "responses": {
                "200": {"description": "the badge", "headers": _BADGE_HEADERS, "content": media},
                "405": _ERR,
            },
        },
        "options": _READ_PREFLIGHT,
    }


_SVG = {"image/svg+xml": {"schema": {"type": "string"}}}
_ENDPOINT = {"application/json": {"schema": {"$ref": "#/components/schemas/Endpoint"}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tallyd",
        "version": __version__,
        "description": "Event counts per account and event type, by period.",
    },
    "paths": {
        "/api/events": {
            "post": {
                "summary": "Count events: one JSON object, a JSON array, or NDJSON",
                "parameters": [_param("wait", enum=["flush"])],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                ]
                            }
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "202": {
                        "description": "accepted",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/IngestResult"}
                            }
                        },
                    },
                    "400": _ERR,
                    "413": _ERR,
                    "415": _ERR,
                    "503": _ERR,
                },
            },
            "options": _preflight(INGEST_METHODS, "--cors-ingest (default none)"),
        },
        "/api/stats/track": _get("Event types seen", []),
        "/api/stats/track/{account}": _get("Event types an account has sent", [_ACC]),
        _T: _get("All time, by year", [_ACC, _EV], "Period"),
        _T + "/{year}": _get("A year, by month", [_ACC, _EV, _Y], "Period"),
        _T + "/{year}/{month}": _get("A month, by day", [_ACC, _EV, _Y, _M], "Period"),
        _T + "/{year}/{month}/{day}": _get("A day, by hour", [_ACC, _EV, _Y, _M, _D], "Period"),
        _T + "/{year}/{month}/{day}/{hour}": _get(
            "An hour, by minute", [_ACC, _EV, _Y, _M, _D, _H], "Period"
        ),
        "/api/stats/funnels/{account}/{event}/{year}": _get(
            "Breakdown for a year", [_ACC, _EV, _Y]
        ),
        "/api/stats/funnels/{account}/{event}/{year}/{month}": _get(
            "Breakdown for a month", [_ACC, _EV, _Y, _M]
        ),
        "/api/stats/series": _get(
            "Counts per interval across a range",
            [
                _param("account", required=True),
                _param("event", required=True),
                _param("from", required=True),
                _param("to"),
                _param("interval", enum=["minute", "hour", "day", "month", "year"]),
                _param("format", enum=["json", "csv"]),
            ],
        ),
        "/api/accounts": _get(
            "Accounts seen for an event, in name order",
            [
                _param("event", required=True),
                _param("prefix"),
                _param("after"),
                _param("limit", type="integer", minimum=1, maximum=1000),
            ],
        ),
        "/api/top": _get(
            "Accounts with the most events in a day or month",
            [
                _param("event", required=True),
                _param("period", enum=["day", "month"]),
                _param("date"),
                _param("limit", type="integer", minimum=1, maximum=1000),
            ],
        ),
        "/badge.svg": _badge(
            "The seed's badge URL: counts a hit for `repo`, shows the total",
            [_param("repo", required=True)],
            _SVG,
        ),
        "/badge.json": _badge(
            "The seed's badge URL as shields.io's endpoint JSON; counts only with increment=1",
            [_param("repo", required=True)],
            _ENDPOINT,
        ),
        "/badge/{id}.svg": _badge("A badge: counts a view, shows the chosen figure", [_ID], _SVG),
        "/badge/{id}.json": _badge(
            "shields.io's endpoint JSON for the figure; counts only with increment=1",
            [_ID],
            _ENDPOINT,
        ),
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "headers": _CORS}},
            },
            "options": _READ_PREFLIGHT,
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and store health",
                "responses": {"200": {"description": "ok"}, "503": _ERR},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text format"}},
            }
        },
    },
    "components": {
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
                "properties": {
                    "type": {"type": "string"},
                    "event": {"type": "string"},
                    "account": {"type": "string"},
                    "data": {"type": "object", "properties": {"account": {"type": "string"}}},
                    "time": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                    "id": {"type": "string"},
                    "seq": {"type": "integer"},
                },
            },
            "IngestResult": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "duplicates": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
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
                "properties": {
                    "account": {"type": "string"},
                    "event": {"type": "string"},
                    "year": {"type": ["integer", "null"]},
                    "month": {"type": ["integer", "null"]},
                    "day": {"type": ["integer", "null"]},
                    "hour": {"type": ["integer", "null"]},
                    "total": {"type": "integer"},
                    "data": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "links": {"type": "object"},
                },
            },
        }
    },
}
