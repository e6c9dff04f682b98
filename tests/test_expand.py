"""Expanding cells into a batch: the seed's layout, the rollup, indexes and retention."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tallyd.events import Cell
from tallyd.expand import Expander
from tallyd.keys import KeySpace
from tallyd.periods import Clock
from tallyd.retention import DAY, Retention
from tallyd.stores import Batch

MINUTE = 1_378_389_787 // 60  # 2013-09-05T14:03Z


def build(cells: dict[Cell, int], retention: Retention | None = None, prefix: str = "") -> Batch:
    # Retention off unless given: 2013's hours and minutes are past the default one.
    keep = retention or Retention(0, 0)
    return Expander(KeySpace(prefix), Clock("UTC"), keep).build("n", 1, cells)


def test_the_first_seeds_layout() -> None:
    b = build({("acme", "pageview", MINUTE, None): 3, ("ben/x", "pageview", MINUTE + 60, None): 1})
    c = b.counters
    assert c["acme/pageview"] == {"2013": 3}
    assert c["acme/pageview/2013"] == {"09": 3}
    assert c["acme/pageview/2013/09"] == {"05": 3}
    assert c["acme/pageview/2013/09/05"] == {"14": 3}
    assert c["acme/pageview/2013/09/05/14"] == {"03": 3}
    assert c["ben%2Fx/pageview/2013/09/05"] == {"15": 1}
    assert c["all/pageview/2013/09/05"] == {"14": 3, "15": 1}
    assert c["all/pageview"] == {"2013": 4}


def test_funnels_indexes_rankings() -> None:
    b = build(
        {
            ("acme", "order", MINUTE, "paid"): 2,
            ("acme", "order", MINUTE, "pending"): 1,
            ("zed", "order", MINUTE, "paid"): 5,
        }
    )
    assert b.counters["funnels:acme/order/2013"] == {"paid": 2, "pending": 1}
    assert b.counters["funnels:all/order/2013/09"] == {"paid": 7, "pending": 1}
    assert b.indexes == {
        "events": {"order"},
        "accounts:order": {"acme", "zed"},
        "events:acme": {"order"},
        "events:zed": {"order"},
    }
    assert b.rankings == {
        "top:order/2013/09/05": {"acme": 3, "zed": 5},
        "top:order/2013/09": {"acme": 3, "zed": 5},
    }


def test_retention_marks_only_fine_grained_hashes() -> None:
    # Kept for 100,000 days, 2013's hours are within retention.
    b = build({("a", "e", MINUTE, None): 1}, Retention(100_000, 100_000))
    hour = 1_378_389_600  # 2013-09-05T14:00Z
    day = 1_378_339_200  # 2013-09-05T00:00Z
    assert b.expire_at == {
        "a/e/2013/09/05/14": hour + 3600 + 100_000 * DAY,
        "all/e/2013/09/05/14": hour + 3600 + 100_000 * DAY,
        "a/e/2013/09/05": day + DAY + 100_000 * DAY,
        "all/e/2013/09/05": day + DAY + 100_000 * DAY,
    }
    assert build({("a", "e", MINUTE, None): 1}, Retention(0, 0)).expire_at == {}


def test_hashes_past_retention_are_not_written() -> None:
    b = build({("a", "e", MINUTE, None): 2}, Retention(minutes_days=7, hours_days=400))
    assert b.counters["a/e/2013/09"] == b.counters["all/e/2013/09"] == {"05": 2}
    assert not any(k.startswith(("a/e/2013/09/05", "all/e/2013/09/05")) for k in b.counters)
    assert b.expire_at == {}
    # Hours kept, minutes not: the day's hash is written, the hour's is not.
    b = build({("a", "e", MINUTE, None): 2}, Retention(minutes_days=7, hours_days=0))
    assert b.counters["a/e/2013/09/05"] == {"14": 2}
    assert "a/e/2013/09/05/14" not in b.counters and b.expire_at == {}


def test_every_cell_of_a_repeated_hour_gives_one_expiry() -> None:
    # Europe/Madrid, 27 October 2013: 00:30 and 01:30 UTC are both local 02:30.
    first = 1_382_833_800 // 60
    expander = Expander(KeySpace(), Clock("Europe/Madrid"), Retention(100_000, 100_000))
    b = expander.build("n", 1, {("a", "e", first, None): 1, ("a", "e", first + 60, None): 1})
    assert b.counters["a/e/2013/10/27/02"] == {"30": 2}
    # The hour ends after its second pass (02:00 UTC), the day at 23:00 UTC.
    assert b.expire_at["a/e/2013/10/27/02"] == 1_382_839_200 + 100_000 * DAY
    assert b.expire_at["a/e/2013/10/27"] == 1_382_914_800 + 100_000 * DAY


def test_prefix_applies_to_every_key() -> None:
    b = build({("a", "order", MINUTE, "paid"): 1}, prefix="t:")
    keys = [*b.counters, *b.indexes, *b.rankings, *b.expire_at]
    assert all(k.startswith("t:") for k in keys)
    assert "t:funnels:a/order/2013" in b.counters


def test_index_entries_and_expiries_are_written_once() -> None:
    expander = Expander(KeySpace(), Clock("UTC"), Retention(minutes_days=7, hours_days=400))
    now = int(time.time()) // 60
    cells: dict[Cell, int] = {("acme", "pageview", now, None): 1}
    first = expander.build("n", 1, cells)
    assert first.indexes["accounts:pageview"] == {"acme"}
    assert len(first.expire_at) == 4  # day and hour hashes, for acme and for all
    second = expander.build("n", 2, cells)
    assert second.counters == first.counters  # counts are always written
    assert not any(second.indexes.values()) and not second.expire_at


ZONES = ["UTC", "Europe/Madrid", "Asia/Kolkata", "America/Havana", "Australia/Lord_Howe"]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["order", "pv"]),
            # From 2012 to about now: past both retentions, past minutes only, kept.
            st.integers(22_000_000, int(time.time() // 60)),
            st.sampled_from([None, "paid"]),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_coarse_minutes_change_no_key_that_is_written(zone: str, cells: list[Cell]) -> None:
    # An event counted at `coarse_minute` instead of its own minute changes nothing a
    # store is given: only hashes past retention, which are never written, differ.
    expander = Expander(KeySpace(""), Clock(zone), Retention())
    fine: dict[Cell, int] = {}
    coarse: dict[Cell, int] = {}
    for account, event, minute, bval in cells:
        at = expander.coarse_minute(minute)
        assert at <= minute and Clock(zone).parts(at)[:3] == Clock(zone).parts(minute)[:3]
        fine[account, event, minute, bval] = fine.get((account, event, minute, bval), 0) + 1
        key = (account, event, at, bval)
        coarse[key] = coarse.get(key, 0) + 1
    a = Expander(KeySpace(""), Clock(zone), Retention()).build("n", 1, fine)
    b = Expander(KeySpace(""), Clock(zone), Retention()).build("n", 1, coarse)
    assert (a.counters, a.indexes, a.rankings, a.expire_at) == (
        b.counters,
        b.indexes,
        b.rankings,
        b.expire_at,
    )


def test_coarse_minutes() -> None:
    expander = Expander(KeySpace(""), Clock("Asia/Kolkata"), Retention())
    now = int(time.time() // 60)
    assert expander.coarse_minute(now - 60) == now - 60  # kept: its own minute
    month_ago = now - 30 * 1440
    hour_start = expander.coarse_minute(month_ago)  # past minutes only: its hour's first
    assert Clock("Asia/Kolkata").parts(hour_start)[4] == "00"
    assert 0 <= month_ago - hour_start < 60
    day_start = expander.coarse_minute(MINUTE)  # 2013: its local day's first minute
    assert Clock("Asia/Kolkata").parts(day_start)[3:] == ("00", "00")
    assert Expander(KeySpace(""), Clock("UTC"), Retention(0, 0)).coarse_minute(MINUTE) == MINUTE
