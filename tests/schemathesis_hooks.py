"""What `st run` needs to know about tallyd beyond its OpenAPI document; loaded with
`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks` (see tests/test_schemathesis.py)."""

from __future__ import annotations

import calendar
import json
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response, SerializationContext
from schemathesis.specs.openapi.checks import positive_data_acceptance


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: SerializationContext, value: Any) -> bytes:
    """The documented events, one JSON document a line."""
    lines = value if isinstance(value, list) else [value]
    # json, not orjson: generated integers may be past 64 bits.
    return "\n".join(json.dumps(line) for line in lines).encode()


@schemathesis.check
def positive_data_acceptance_across_parameters(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """`positive_data_acceptance`, except for the refusals that depend on two parameters
    at once, which the document states in the parameters' descriptions.

    OpenAPI gives each parameter a schema of its own, so no schema can say that April
    has no day 31 (`/api/stats/track/.../2013/4/31`: day against month), that a series
    holds at most 20,000 points (`from`..`to` against `interval`), or that `period=day`
    takes a day, not a month (`/api/top`). Each of these is a 400 with a reason, as a
    user of the API would want it; this check lets exactly those through (after checking
    that the request really breaks the rule) and applies the stock check to everything
    else. `st run` is given `--exclude-checks positive_data_acceptance` so that the
    stock check does not fail the same answers again.
    """
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and response.status_code == 400 and _refused_across_parameters(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


def _refused_across_parameters(case: Case, response: Response) -> bool:
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    path = case.operation.path
    params = case.path_parameters or {}
    query = case.query or {}
    if error == "bad_period" and "{day}" in path:
        try:
            year, month, day = (int(params[k]) for k in ("year", "month", "day"))
            return day > calendar.monthrange(year, month)[1]
        except (KeyError, ValueError, calendar.IllegalMonthError):
            return False
    if error == "bad_range" and path == "/api/stats/series":
        return True  # `to` before `from`, or more points than a series holds
    if error == "bad_date" and path == "/api/top":
        period = query.get("period") or "day"
        return period == "day" and str(query.get("date", "")).count("-") == 1
    return False
