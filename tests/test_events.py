from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallyd.events import Rejected, RejectLog, parse, parse_time

BREAKDOWNS = {"order": "status"}
NOW = 1_378_389_787.0  # 2013-09-05T14:03:07Z


def test_bootic_shape() -> None:
    ev = {"type": "pageview", "data": {"account": "acme"}, "time": "2013-09-05T14:03:07Z"}
    assert parse(ev, BREAKDOWNS, NOW) == ("acme", "pageview", int(NOW // 60), None, None)


def test_flat_shape_with_breakdown_and_id() -> None:
    ev = {"event": "order", "account": "acme", "status": "paid", "id": "e-1", "time": NOW}
    assert parse(ev, BREAKDOWNS, 0) == ("acme", "order", int(NOW // 60), "paid", "e-1")


def test_bootic_breakdown_reads_data() -> None:
    ev = {"type": "order", "data": {"account": "acme", "status": "pending"}}
    assert parse(ev, BREAKDOWNS, NOW)[3] == "pending"


def test_absent_time_is_receive_time() -> None:
    assert parse({"event": "x", "account": "a"}, {}, NOW)[2] == int(NOW // 60)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2013-09-05T14:03:07Z", NOW),
        ("2013-09-05T16:03:07+02:00", NOW),
        ("2013-09-05T14:03:07", NOW),  # naive: UTC
        ("2013-09-05 14:03:07.5Z", NOW + 0.5),
        ("1378389787", NOW),
        (1378389787, NOW),
        (1378389787.25, NOW + 0.25),
        # Go's RFC 3339 with nanoseconds and an offset, Ruby's Time#to_s, Go's floats
        ("2013-09-05T10:03:07.619303604-04:00", NOW + 0.619303),
        ("2013-09-05T16:03:07+0200", NOW),
        ("2013-09-05 10:03:07 -0400", NOW),
        ("2013-09-05 14:03:07 UTC", NOW),
        ("1.378389787e+09", NOW),
        (1.378389787e09, NOW),
        ("2013-09-05t14:03:07z", NOW),
        ("2013-09-05", NOW - (14 * 3600 + 3 * 60 + 7)),
    ],
)
def test_times(text: Any, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2013-W36-4",  # ISO week date
        "2013-248",  # ISO ordinal date
        "20130905T140307Z",  # basic format
        "2013-09-05T14",
        "2013-09-05T14:03:07.1234567891Z",  # past nanoseconds
        "2013-02-30T00:00:00Z",
        "2013-09-05T14:03:60Z",
        "2013-09-05T14:03:07 -04:00",  # Ruby's offset has no colon
        "nan",
        "1_378_389_787",
        "",
    ],
)
def test_times_refused(text: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_time(text)
    assert info.value.reason == "bad_time"


def test_ids_as_producers_write_them() -> None:
    def eid(v: Any) -> str | None:
        return parse({"type": "x", "data": {"account": "a"}, "id": v}, {}, NOW)[4]

    assert eid(1234567) == eid(1.234567e06) == eid("1234567") == "1234567"
    assert eid("") is None and eid(None) is None
    for bad in (1.5, True, [1], "x" * 201):
        with pytest.raises(Rejected):
            eid(bad)


def test_breakdown_numbers_as_producers_write_them() -> None:
    def value(v: Any) -> str | None:
        return parse({"type": "order", "data": {"account": "a", "status": v}}, BREAKDOWNS, NOW)[3]

    assert value(1e06) == value(1000000) == "1000000"
    assert value(2.5) == "2.5" and value(True) == "true"


@pytest.mark.parametrize(
    "obj, reason",
    [
        ([], "not_an_object"),
        ("pageview", "not_an_object"),
        ({"data": {"account": "a"}}, "missing_type"),
        ({"type": "x", "data": {}}, "missing_account"),
        ({"type": 5, "data": {"account": "a"}}, "bad_type"),
        ({"type": "x", "data": {"account": ["a"]}}, "bad_account"),
        ({"type": "", "data": {"account": "a"}}, "bad_type"),
        ({"type": "x" * 201, "data": {"account": "a"}}, "too_long"),
        ({"type": "x", "data": {"account": "a\nb"}}, "control_chars"),
        ({"type": "x", "data": {"account": "a\x85"}}, "control_chars"),
        ({"type": "x", "data": {"account": "all"}}, "reserved_account"),
        ({"type": "x", "data": {"account": "a"}, "time": "yesterday"}, "bad_time"),
        ({"type": "x", "data": {"account": "a"}, "time": -1}, "bad_time"),
        ({"type": "x", "data": {"account": "a"}, "time": 1e300}, "bad_time"),
        ({"type": "x", "data": {"account": "a"}, "time": math.nan}, "bad_time"),
        ({"type": "x", "data": {"account": "a"}, "time": True}, "bad_time"),
        ({"type": "x", "data": {"account": "a"}, "id": {"x": 1}}, "bad_id"),
    ],
)
def test_rejections(obj: Any, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse(obj, BREAKDOWNS, NOW)
    assert info.value.reason == reason


def test_name_limit_is_inclusive() -> None:
    ev = {"type": "x" * 200, "data": {"account": "é" * 200}}
    assert parse(ev, {}, NOW)[:2] == ("é" * 200, "x" * 200)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
field_values = scalars | st.sampled_from(["2013-09-05T14:03:07Z", "acme", "order", 1e9, [], {}])


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": field_values,
            "event": field_values,
            "account": field_values,
            "time": field_values,
            "id": field_values,
            "status": field_values,
            "data": st.dictionaries(st.sampled_from(["account", "status", "x"]), field_values),
        },
    )
)
def test_parse_never_crashes(obj: dict[str, Any]) -> None:
    try:
        account, event, minute, bval, eid = parse(obj, BREAKDOWNS, NOW)
    except Rejected as err:
        assert err.reason and err.detail
        return
    assert isinstance(account, str) and 0 < len(account) <= 200 and account != "all"
    assert isinstance(event, str) and 0 < len(event) <= 200
    assert isinstance(minute, int) and minute >= 0
    assert bval is None or isinstance(bval, str)
    assert eid is None or isinstance(eid, str)


@given(json_values)
def test_any_json_value_is_parsed_or_rejected(obj: Any) -> None:
    # Only a dict can be an event; anything else is rejected, never a crash.
    with pytest.raises(Rejected) if not isinstance(obj, dict) else contextlib.nullcontext():
        try:
            assert len(parse(obj, BREAKDOWNS, NOW)) == 5
        except Rejected:
            if not isinstance(obj, dict):
                raise


def test_reject_log_folds_a_batch_into_one_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tallyd.test.rejects")
    reject = RejectLog(log, every=0.2)
    bad = Rejected("invalid_time", "time: not a time")
    with caplog.at_level(logging.WARNING, logger="tallyd.test.rejects"):
        reject("http", bad, 5)  # a body's five rejections of one reason
        reject("http", bad, 3)  # within the second: folded
        reject("bus", bad)  # another source has its own clock
        time.sleep(0.25)
        reject("http", bad)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "rejected event from http: invalid_time: time: not a time (+4 more since last report)",
        "rejected event from bus: invalid_time: time: not a time",
        "rejected event from http: invalid_time: time: not a time (+3 more since last report)",
    ]


async def test_reject_log_reports_what_it_folded_when_its_second_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A crowd refused at once, then nothing: the folded count must not wait for the
    # next refusal, which may never come.
    import asyncio

    log = logging.getLogger("tallyd.test.rejects.later")
    reject = RejectLog(log, every=0.2, what="refused")
    first = Rejected("header_timeout", "the head took too long (GET /1)")
    last = Rejected("header_timeout", "the head took too long (GET /3000)")
    with caplog.at_level(logging.WARNING, logger="tallyd.test.rejects.later"):
        reject("HTTP 408", first)
        for _ in range(2998):
            reject("HTTP 408", first)
        reject("HTTP 408", last)
        await asyncio.sleep(0.3)
    assert [r.getMessage() for r in caplog.records] == [
        "refused HTTP 408: header_timeout: the head took too long (GET /1)",
        "refused HTTP 408: header_timeout: the head took too long (GET /3000)"
        " (+2998 more since last report)",
    ]


def test_refusals_kept_in_a_list_leave_no_garbage_cycles() -> None:
    # A caught exception holds its traceback, and through it the frames that raised
    # it: a cycle per refusal, which only the collector frees. A 1 MB body of tiny
    # bad events once held ~500 MB that way until a full pass stalled the server.
    import gc

    from tallyd.events import parse_many
    from tallyd.ingest.syslog import event_of

    bad: list[tuple[int, Any]] = [
        (0, {}),  # missing_type
        (1, []),  # not_an_object
        (2, {"type": "pageview", "data": {"account": "acme"}, "time": "13:00 yesterday"}),
        (3, event_of(b'"not a date","acme"', "hit")),  # refused while read (syslog)
    ]
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            _, _, rejected = parse_many(bad, BREAKDOWNS, NOW, set())
            assert [err.reason for _, err in rejected] == [
                "missing_type",
                "not_an_object",
                "bad_time",
                "bad_time",
            ]
            del rejected
        assert gc.collect() == 0
    finally:
        gc.enable()
