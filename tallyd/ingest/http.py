"""`POST /api/events`: one JSON event, a JSON array, or NDJSON (SPEC §4)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tallyd.aggregator import NotDurable, Overloaded
from tallyd.events import NEW_NAME_LIMIT, Rejected, decoded
from tallyd.intake import Intake
from tallyd.web import HTTPError, Response, json_response

SOURCE = "http"
MAX_ERRORS = 100


def decode(body: bytes) -> list[Any | Rejected]:
    """The events in a body; an undecodable NDJSON line becomes a `Rejected`."""
    if not body.strip():
        raise HTTPError(400, "empty", "the body holds no events")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if b"\n" not in body.strip():
            raise HTTPError(400, "invalid_json", f"the body is not JSON: {exc}") from None
        return [decoded(line, "this line") for line in body.splitlines() if line.strip()]
    if type(doc) is list:
        if not doc:
            raise HTTPError(400, "empty", "the array holds no events")
        return doc
    return [doc]


async def post_events(intake: Intake, body: bytes, wait: bool) -> Response:
    """Count a body's events; 202 with what was accepted, 400 if none was."""
    try:
        intake.aggregator.check_capacity()
    except NotDurable as exc:
        raise HTTPError(503, "not_durable", str(exc), [(b"retry-after", b"5")]) from None
    except Overloaded as exc:
        raise HTTPError(503, "overloaded", str(exc), [(b"retry-after", b"1")]) from None
    # Read in place when the body allows it; decoded whole (and its errors told) if not.
    counted = await intake.count_body(body, SOURCE)
    if counted is None:
        counted = await intake.count_many_fairly(decode(body), SOURCE)
    accepted, duplicates, rejected = counted.accepted, counted.duplicates, len(counted.rejected)
    # Past the limit on new names, `resend` lists each refused event by its index
    # alone: a flood's answer stays small (its `errors` once cost a 429 of 120 KB).
    resend = [i for i, err in counted.rejected if err is NEW_NAME_LIMIT]
    limited = bool(resend)
    errors = [
        {"index": i, "reason": err.reason, "detail": err.detail}
        for i, err in counted.rejected[:MAX_ERRORS]
    ]
    answer: dict[str, Any] = {
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "errors": errors,
    }
    if limited:
        answer["resend"] = resend
    if rejected and not accepted and not duplicates and not limited:
        answer["error"] = "rejected"
        answer["detail"] = "no event in the body could be counted"
        # Its events are logged and metered by reason already; the answer is metered too.
        intake.metrics.http_error(400, "rejected")
        return json_response(answer, 400)
    agg = intake.aggregator
    try:
        if wait and accepted:
            # Bounded: during an outage the answer says the events are not stored yet
            # (they are accepted, and will be) instead of holding the client.
            try:
                await asyncio.wait_for(agg.flushed(), agg.wait_timeout)
                answer["stored"] = True
            except TimeoutError:
                answer["stored"] = False
        else:
            # With --durable, accepted means on disk: the 202 waits for the journal.
            await agg.acknowledged()
    except OSError as exc:
        raise HTTPError(503, "not_durable", str(exc), [(b"retry-after", b"5")]) from None
    if limited:
        # Some events must wait for room for new names: 429, and `resend` lists which.
        answer["error"] = NEW_NAME_LIMIT.reason
        answer["detail"] = NEW_NAME_LIMIT.detail
        retry = str(intake.new_names.retry_after(len(resend))).encode()
        intake.metrics.http_error(429, NEW_NAME_LIMIT.reason)
        return json_response(answer, 429, [(b"retry-after", retry)])
    return json_response(answer, 202)
