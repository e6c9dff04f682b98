"""Expanding cells into a batch: the seed's layout, the rollup, indexes and retention."""

from __future__ import annotations

import time

from tallyd.events import Cell
from tallyd.expand import DAY, Expander, Retention
from tallyd.keys import KeySpace
from tallyd.periods import Clock
from tallyd.stores import Batch

MINUTE = 1_378_389_787 // 60  # 2013-09-05T14:03Z


def build(cells: dict[Cell, int], retention: Retention | None = None, prefix: str = "") -> Batch:
    return Expander(KeySpace(prefix), Clock("UTC"), retention or Retention()).build("n", 1, cells)


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
    b = build({("a", "e", MINUTE, None): 1}, Retention(minutes_days=7, hours_days=400))
    hour = 1_378_389_600  # 2013-09-05T14:00Z
    day = 1_378_339_200  # 2013-09-05T00:00Z
    assert b.expire_at == {
        "a/e/2013/09/05/14": hour + 3600 + 7 * DAY,
        "all/e/2013/09/05/14": hour + 3600 + 7 * DAY,
        "a/e/2013/09/05": day + DAY + 400 * DAY,
        "all/e/2013/09/05": day + DAY + 400 * DAY,
    }
    assert build({("a", "e", MINUTE, None): 1}, Retention(0, 0)).expire_at == {}


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
    # An expiry already past deletes the key: it goes with every batch that recreates it.
    old: dict[Cell, int] = {("acme", "pageview", MINUTE, None): 1}
    assert expander.build("n", 3, old).expire_at
    assert expander.build("n", 4, old).expire_at
