"""Totals across a prefix: `/badge/{owner}/*.svg` and the `owner/*` rollup account."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.timeout(180)

IDS = [f"a/x{i}" for i in range(25)] + [f"b/y{i}" for i in range(25)]
HITS = 10_000
VIEWS_PER_ID = 10  # the rest of the hits are POSTed


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/prefix.db"
    url: str = request.getfixturevalue("redis_url")
    return url


def figure(server: Server, path: str, **params: str) -> int:
    """The number a badge shows: read from its `aria-label`, or the endpoint's message."""
    r = server.get(path, **params)
    assert r.status_code == 200, r.text
    if path.endswith(".json"):
        doc = r.json()
        assert not doc["isError"], doc
        return int(doc["message"].replace(",", ""))
    label = ET.fromstring(r.text).get("aria-label", "")
    return int(label.rpartition(": ")[2].replace(",", ""))


def api_total(server: Server, account: str, *parts: str) -> int:
    path = "/".join(("/api/stats/track", account.replace("/", "%2F"), "hit", *parts))
    r = server.get(path)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def check(server: Server, want: Counter[str]) -> None:
    """Every figure of each owner's rollup is the sum of its ids."""
    for owner in ("a", "b"):
        total = sum(n for ident, n in want.items() if ident.startswith(f"{owner}/"))
        assert figure(server, f"/badge/{owner}/*.svg") == total
        assert figure(server, f"/badge/{owner}/*.svg", metric="today") == total
        assert figure(server, f"/badge/{owner}/*.json") == total
        assert figure(server, f"/badge/{owner}/*.json", metric="today") == total
        assert api_total(server, f"{owner}/*") == total
    assert api_total(server, "all") == HITS


def test_prefix_totals_are_the_sum_of_their_ids(
    server_factory: type[Server], tmp_path: Path, store: str
) -> None:
    server = server_factory(tmp_path, store=store).start()
    rnd = random.Random(14)
    want: Counter[str] = Counter()
    for ident in IDS:
        for _ in range(VIEWS_PER_ID):
            figure(server, f"/badge/{ident}.svg")
        want[ident] += VIEWS_PER_ID
    posted = [rnd.choice(IDS) for _ in range(HITS - len(want) * VIEWS_PER_ID)]
    for start in range(0, len(posted), 1000):
        batch = [{"event": "hit", "account": a} for a in posted[start : start + 1000]]
        assert server.post(batch).json()["accepted"] == len(batch)
    want.update(posted)
    assert sum(want.values()) == HITS
    # At once, with the last cells still in memory or being written.
    check(server, want)
    # Views of the rollup show the sum without counting themselves; views of its ids
    # move the rollup's figures at once.
    for _ in range(3):
        figure(server, "/badge/a/*.svg")
    figure(server, "/badge.svg", repo="a/*")
    for ident in ("a/x0", "a/x1", "b/y7"):
        figure(server, f"/badge/{ident}.svg")  # its own figure may lag the POSTs a while
        want[ident] += 1
    want_total = HITS + 3
    a_sum = sum(n for ident, n in want.items() if ident.startswith("a/"))
    assert figure(server, "/badge/a/*.svg") == a_sum
    assert figure(server, "/badge/a/*.svg", metric="unique") >= 1
    # A new process reads every figure from the store alone.
    server.restart()
    for owner in ("a", "b"):
        total = sum(n for ident, n in want.items() if ident.startswith(f"{owner}/"))
        assert figure(server, f"/badge/{owner}/*.svg") == total
        assert figure(server, f"/badge/{owner}/*.svg", metric="today") == total
        assert figure(server, f"/badge/{owner}/*.json") == total
        assert api_total(server, f"{owner}/*") == total
    assert api_total(server, "all") == want_total
    # The rollup is no account: refused at ingest, not listed, not ranked.
    r = server.post([{"event": "hit", "account": "a/*"}])
    assert r.status_code == 400
    assert [e["reason"] for e in r.json()["errors"]] == ["reserved_account"]
    listed = server.get("/api/accounts", event="hit", limit="1000").json()["accounts"]
    assert sorted(listed) == sorted(IDS)
    metrics = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="http",reason="reserved_account"} 1' in metrics
