"""Abuse limits: new names per minute, counted badge views per client (SPEC §8)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import zmq

from tallyd.limits import ClientRate, NewNames
from tallyd.shard import Shard
from tests.conftest import Server
from tests.test_zmq import connected, ctx, total, wait_total

__all__ = ["ctx"]

pytestmark = pytest.mark.timeout(60)

T = 1_378_389_787
CAMO = "github-camo (876b6c1c)"


def test_new_accounts_past_the_limit_get_a_429_naming_each_event(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # 600 a minute: 100 at once (ten seconds' worth), then one every 0.1 s.
    server = server_factory(tmp_path, "--max-new-ids-per-minute", "600").start()
    events = [{"event": "pageview", "account": f"new{i}", "time": T} for i in range(300)]
    r = server.post(events)
    assert r.status_code == 429
    # Time for as many new names as were refused, up to the 100 that fit at once.
    assert int(r.headers["retry-after"]) == 10
    body = r.json()
    assert body["error"] == "new_name_limit"
    refused = body["resend"]
    assert all(e["reason"] == "new_name_limit" for e in body["errors"])
    # The event type is a new name too: 99 accounts fit in the 100.
    assert body["accepted"] == 99 and len(refused) == 201 == body["rejected"]
    assert refused == list(range(99, 300))
    # `errors` describes the first 100, as on any answer; `resend` names them all.
    assert [e["index"] for e in body["errors"]] == list(range(99, 199))
    # The accepted are counted; accounts already known go on being counted.
    assert server.post(events[:99]).status_code == 202
    assert total(server) == 198
    assert server.metric("tallyd_new_names_refused_total") == 201
    assert server.metric("tallyd_http_errors_total", status="429", error="new_name_limit") == 1
    text = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="http",reason="new_name_limit"} 201' in text


def test_once_the_limit_is_spent_each_event_gets_the_answer_the_full_parser_gives(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # Two at once, then one every 5 s.
    server = server_factory(tmp_path, "--max-new-ids-per-minute", "12").start()
    # Two new names, `pageview` and `known`: the minute's allowance is spent.
    assert server.post({"event": "pageview", "account": "known", "time": T}).status_code == 202
    bootic = {
        "type": "pageview",
        "data": {"account": "fresh2", "browser": {"name": "Safari", "version": 6.1}},
        "time": "2013-09-05T11:03:07.619303604+02:00",
    }
    body = [
        {"event": "pageview", "account": "fresh1", "time": T},
        {"event": "pageview", "account": "known", "time": T},
        bootic,
        {"event": "signup", "account": "known", "time": T},  # a new event type
        {"event": "pageview", "account": "all", "time": T},
        {"event": "pageview", "account": "x" * 201, "time": T},
        {"event": "all", "account": "known", "time": T},  # a rollup's name: never new
    ]
    for form in ("array", "ndjson"):
        data = orjson.dumps(body) if form == "array" else b"\n".join(orjson.dumps(e) for e in body)
        r = server.client.post("/api/events", content=data)
        assert r.status_code == 429, r.text
        answer = r.json()
        assert (answer["accepted"], answer["rejected"]) == (2, 5)
        assert answer["resend"] == [0, 2, 3]
        assert [(e["index"], e["reason"]) for e in answer["errors"]] == [
            (0, "new_name_limit"),
            (2, "new_name_limit"),
            (3, "new_name_limit"),
            (4, "reserved_account"),
            (5, "too_long"),
        ]
    assert server.metric("tallyd_new_names_refused_total") == 6
    text = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="http",reason="new_name_limit"} 6' in text
    assert total(server) == 3


def test_the_bus_drops_and_counts_past_the_limit(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # 300 a minute: 50 at once (ten seconds' worth), then 5 a second.
    server, pub = connected(server_factory, tmp_path, ctx, "--max-new-ids-per-minute", "300")
    rejected = 'tallyd_events_rejected_total{source="zmq",reason="new_name_limit"}'
    start = time.monotonic()
    for i in range(200):
        event = {"type": "pageview", "data": {"account": f"bus{i}"}, "time": T}
        pub.send(b"events " + orjson.dumps(event))
    deadline = start + 10
    while total(server) + server.metric(rejected) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - start
    counted = total(server)
    # The event type is a new name too: 49 accounts fit at once, and as many more
    # as the time it took let in.
    assert 49 <= counted <= 49 + 5 * took
    refused = server.metric("tallyd_new_names_refused_total")
    assert server.metric(rejected) == 200 - counted == refused
    time.sleep(0.3)
    assert total(server) == counted


def test_a_shard_node_spends_its_limit_on_its_own_accounts_only(
    server_factory: type[Server], tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # 400 new accounts on the bus, about half of them this node's: its limit of 250
    # at once (1,500 a minute) is more than its share, so all its share is counted.
    server, pub = connected(
        server_factory, tmp_path, ctx, "--shard", "0/2", "--max-new-ids-per-minute", "1500"
    )
    accounts = [f"bus{i}" for i in range(400)]
    mine = [a for a in accounts if Shard(0, 2).owns(a)]
    assert 150 < len(mine) < 250
    for account in accounts:
        event = {"type": "pageview", "data": {"account": account}, "time": T}
        pub.send(b"events " + orjson.dumps(event))
    assert wait_total(server, len(mine)) == len(mine)
    time.sleep(0.3)
    assert total(server) == len(mine)
    assert server.metric("tallyd_new_names_refused_total") == 0


def test_new_names_of_other_shards_are_known_but_not_admitted_against_the_limit() -> None:
    known: set[str] = set()
    names = NewNames(known, per_minute=1)
    shard = Shard(0, 2)
    ours = [n for n in (f"n{i}" for i in range(20)) if shard.owns(n)]
    theirs = [n for n in (f"n{i}" for i in range(20)) if not shard.owns(n)]
    admit = names.admit_for(shard)
    assert all(admit(n) for n in theirs)
    assert [admit(n) for n in ours[:2]] == [True, False]
    assert known == {*theirs, ours[0]} and names.refused == 1
    assert names.admit_for(None) == names.admit


def test_new_badge_ids_past_the_limit_get_an_error_badge(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # 30 a minute: 5 at once, then one every 2 s.
    server = server_factory(tmp_path, "--max-new-ids-per-minute", "30").start()
    answers = [server.get(f"/badge/o/n{i}.svg") for i in range(8)]
    assert all(r.status_code == 200 for r in answers)  # images, as GitHub's proxy needs
    refused = [r for r in answers if r.headers.get("x-tallyd-error") == "new_id_limit"]
    assert len(refused) == 3
    assert all(1 <= int(r.headers["retry-after"]) <= 2 for r in refused)
    assert all("new id limit" in r.text for r in refused)
    # An id counted before is not new: it keeps counting.
    assert "x-tallyd-error" not in server.get("/badge/o/n0.svg").headers


def test_a_client_past_its_badge_rate_is_drawn_not_counted(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--badge-rate", "3").start()
    for _ in range(20):
        assert server.get("/badge/o/flood.svg").status_code == 200
    # GitHub's image proxy views for every reader at once: never limited per client.
    for _ in range(20):
        r = server.client.get("/badge/o/flood.svg", headers={"user-agent": CAMO})
        assert r.status_code == 200
    time.sleep(0.5)
    got = server.get("/api/stats/track/o%2Fflood/hit").json()["total"]
    assert got == 3 + 20
    assert server.metric("tallyd_badge_views_not_counted_total") == 17


def test_the_client_rate_table_is_bounded_and_forgets_each_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [6000.0]
    monkeypatch.setattr("tallyd.limits.time.monotonic", lambda: now[0])
    rate = ClientRate(burst=2, max_entries=100)
    assert [rate.allow("10.0.0.1", "o/n", b"curl") for _ in range(4)] == [1, 1, 0, 0]
    for i in range(300):  # a flood of addresses: the table stays at its bound
        rate.allow(f"10.1.{i // 256}.{i % 256}", "o/n", b"curl")
    assert len(rate._views) <= 100 and rate.overflows > 0
    now[0] += 60
    assert rate.allow("10.0.0.1", "o/n", b"curl")
    assert len(rate._views) == 1


def test_new_names_admits_known_names_past_the_limit() -> None:
    known: set[str] = set()
    names = NewNames(known, per_minute=12)  # two at once
    assert [names.admit(n) for n in ("a", "b", "c", "a", "b")] == [1, 1, 0, 1, 1]
    assert known == {"a", "b"} and names.refused == 1


def test_new_names_come_at_an_even_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [6000.0]
    monkeypatch.setattr("tallyd.limits.time.monotonic", lambda: now[0])
    names = NewNames(set(), per_minute=600)  # 10 a second, at most 100 at once
    assert names.room() == 100
    assert sum(names.admit(f"a{i}") for i in range(150)) == 100
    assert (names.room(), names.retry_after(), names.retry_after(30)) == (0, 1, 3)
    assert names.retry_after(1000) == 10  # no more than 100 ever fit at once
    now[0] += 0.55
    assert names.room() == 5
    assert sum(names.admit(f"b{i}") for i in range(10)) == 5
    now[0] += 3600  # an idle hour saves no more than the 100
    assert sum(names.admit(f"c{i}") for i in range(150)) == 100
    assert names.refused == 50 + 5 + 50
    slow = NewNames(set(), per_minute=6)  # one at once, then one every 10 s
    assert [slow.admit(n) for n in ("x", "y")] == [True, False]
    assert slow.retry_after() == 10
    now[0] += 9.5
    assert (slow.room(), slow.retry_after()) == (0, 1)
    assert NewNames(set(), per_minute=0).room() == -1


def test_the_rollup_of_every_account_is_no_badge(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path).start()
    server.post([{"event": "hit", "account": "o/n", "time": T}])
    for path, params in (("/badge/all.svg", {}), ("/badge.svg", {"repo": "all"})):
        r = server.get(path, **params)
        assert r.status_code == 200 and r.headers["x-tallyd-error"] == "reserved_id"
    r = server.get("/badge/all.json")
    assert r.json()["isError"] is True
    assert server.post([{"event": "hit", "account": "all", "time": T}]).status_code == 400
    assert "all" not in server.get("/api/accounts", event="hit").json()["accounts"]
