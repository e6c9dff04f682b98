from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallyd.periods import Clock, Period


def test_parts_are_zero_padded() -> None:
    assert Period(2013, 9, 5, 4).parts == ("2013", "09", "05", "04")
    assert Period.from_strings(["2013", "2"]) == Period.from_strings(["2013", "02"])


@pytest.mark.parametrize(
    "period, segments",
    [
        (Period(2013), list(range(1, 13))),
        (Period(2013, 2), list(range(1, 29))),
        (Period(2012, 2), list(range(1, 30))),
        (Period(2013, 9, 5), list(range(24))),
        (Period(2013, 9, 5, 14), list(range(60))),
    ],
)
def test_segments(period: Period, segments: list[int]) -> None:
    assert period.segments() == segments


@pytest.mark.parametrize(
    "parts",
    [
        ["2013", "13"],
        ["2013", "0"],
        ["2013", "2", "29"],
        ["2013", "1", "1", "24"],
        ["1969"],
        ["x"],
        ["2013", "-1"],
        ["2013", "1", "1", "1", "1"],
        ["٣"],
    ],
)
def test_invalid_periods(parts: list[str]) -> None:
    with pytest.raises(ValueError):
        Period.from_strings(parts)


def test_dst_spring_forward_in_madrid() -> None:
    clock = Clock("Europe/Madrid")
    # 2013-03-31 01:00 UTC is 03:00 CEST: local 02:xx never exists that day.
    before = int(datetime(2013, 3, 31, 0, 59, tzinfo=UTC).timestamp() // 60)
    assert clock.parts(before) == ("2013", "03", "31", "01", "59")
    assert clock.parts(before + 1) == ("2013", "03", "31", "03", "00")


def test_dst_fall_back_in_madrid_folds_into_one_hour() -> None:
    clock = Clock("Europe/Madrid")
    first = int(datetime(2013, 10, 27, 0, 30, tzinfo=UTC).timestamp() // 60)
    second = int(datetime(2013, 10, 27, 1, 30, tzinfo=UTC).timestamp() // 60)
    assert clock.parts(first) == clock.parts(second) == ("2013", "10", "27", "02", "30")


def test_unknown_zone() -> None:
    with pytest.raises(ValueError, match="IANA"):
        Clock("Mars/Olympus")


@given(
    st.integers(min_value=0, max_value=4_000_000_000 // 60),
    st.sampled_from(
        [
            "UTC",
            "Europe/Madrid",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
        ]
    ),
)
def test_clock_matches_zoneinfo(minute: int, tz: str) -> None:
    d = datetime.fromtimestamp(minute * 60, ZoneInfo(tz))
    expected = (
        f"{d.year:04d}",
        f"{d.month:02d}",
        f"{d.day:02d}",
        f"{d.hour:02d}",
        f"{d.minute:02d}",
    )
    assert Clock(tz).parts(minute) == expected


def test_field_of() -> None:
    p = ("2013", "09", "05", "14", "03")
    assert Period().field_of(p) == "2013"
    assert Period(2013).field_of(p) == "09"
    assert Period(2013, 9, 5, 14).field_of(p) == "03"
    assert Period(2013, 8).field_of(p) is None
