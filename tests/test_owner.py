"""Owner actions: an id's baseline, resetting and deleting its counts, behind the admin token.

The store half runs on every backend (the `store` fixture); the HTTP half on real
`tallyd serve` processes over SQLite, Redis and a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tallyd.aggregator import Aggregator
from tallyd.config import Config
from tallyd.expand import Expander
from tallyd.keys import BASELINE, KeySpace
from tallyd.metrics import Metrics
from tallyd.owner import stored_keys
from tallyd.periods import Clock
from tallyd.retention import Retention
from tallyd.stats import Stats
from tallyd.stores import Store
from tallyd.stores.base import Edit
from tests.conftest import Server

NOW = int(time.time() // 60)
TODAY = Clock("UTC").parts(NOW)[:3]
LAST_YEAR = NOW - 400 * 1440  # another year, month and day


@contextlib.asynccontextmanager
async def running(store: Store) -> AsyncIterator[tuple[Aggregator, Stats]]:
    """An aggregator with its flush loop, as `tallyd serve` runs it."""
    keys, clock, retention = KeySpace(), Clock("UTC"), Retention()
    agg = Aggregator(store, Expander(keys, clock, retention), Metrics(), flush_interval=0.05)
    loop = asyncio.create_task(agg.run())
    try:
        yield agg, Stats(store, keys, clock, agg, retention=retention)
    finally:
        agg.stop()
        await loop


def hits(agg: Aggregator, account: str, n: int, minute: int = NOW, event: str = "hit") -> None:
    for _ in range(n):
        agg.add((account, event, minute, None, None))


async def totals(stats: Stats, account: str, event: str = "hit") -> tuple[int, int]:
    """(all time, today) as a badge reads them."""
    total, today = await stats.totals([(account, event, ()), (account, event, TODAY)])
    return total, today


async def erase(agg: Aggregator, stats: Stats, account: str, forget: bool) -> Edit:
    """A reset (or, `forget`, a delete) as the HTTP handler makes it."""
    async with agg.exclusive():
        change = await stored_keys(stats.store, stats.keys, account, "hit", forget)
        await stats.store.edit(change)
        if forget:
            agg.forget()
    return change


async def test_a_baseline_is_in_the_total_and_not_in_today(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 3)
        await agg.flushed()
        key = stats.keys.baseline("o%2Fr", "hit")
        await store.edit(Edit(fields={key: {BASELINE: 1000}}))
        hits(agg, "o/r", 2)  # pending: read with the store's counts
        assert await totals(stats, "o/r") == (1005, 5)
        # Not in the rollups: they count events, and a baseline is none.
        assert await totals(stats, "o/*") == (5, 5)
        assert await totals(stats, "all") == (5, 5)
        await store.edit(Edit(fields={key: {BASELINE: 0}}))  # 0 takes it away
        assert await totals(stats, "o/r") == (5, 5)


async def test_a_reset_empties_every_period_of_the_id_and_nothing_else(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 4)
        hits(agg, "o/r", 2, LAST_YEAR)
        hits(agg, "o/other", 7)
        agg.add(("o/r", "order", NOW, "paid", None))  # another event of the account: kept
        await agg.flushed()
        await store.edit(Edit(fields={stats.keys.baseline("o%2Fr", "hit"): {BASELINE: 50}}))
        hits(agg, "o/r", 1)  # not flushed yet: the reset writes it first, then erases it
        assert await totals(stats, "o/r") == (57, 5)

        change = await erase(agg, stats, "o/r", forget=False)
        # All time, 2 years, 2 months, 2 days, 2 hours, 4 funnels, 2 sketches and the baseline.
        assert len(change.drop) == 16
        await agg.flushed()  # nothing left to undo it
        assert await totals(stats, "o/r") == (0, 0)
        assert await totals(stats, "o/other") == (7, 7)
        assert await totals(stats, "o/r", "order") == (1, 1)
        assert await totals(stats, "all") == (14, 12)  # rollups keep what they counted
        day = stats.keys.ranking("hit", TODAY)
        assert [m for m, _ in await store.top(day, 10)] == ["o%2Fother"]
        # Still listed, and new hits count from zero.
        assert await store.members(stats.keys.accounts("hit"), "", "", 10) == ["o%2Fother", "o%2Fr"]
        hits(agg, "o/r", 2)
        await agg.flushed()
        assert await totals(stats, "o/r") == (2, 2)


async def test_a_delete_takes_the_id_out_of_the_listings_until_it_counts_again(
    store: Store,
) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 3)
        hits(agg, "o/other", 1)
        await agg.flushed()
        await erase(agg, stats, "o/r", forget=True)
        keys = stats.keys
        assert await store.members(keys.accounts("hit"), "", "", 10) == ["o%2Fother"]
        assert await store.members(keys.account_events("o%2Fr"), "", "", 10) == []
        assert await totals(stats, "o/r") == (0, 0)
        # The process forgot it wrote the id's index entries: its next hit lists it again.
        hits(agg, "o/r", 1)
        await agg.flushed()
        assert await store.members(keys.accounts("hit"), "", "", 10) == ["o%2Fother", "o%2Fr"]
        assert await store.members(keys.account_events("o%2Fr"), "", "", 10) == ["hit"]


async def test_counts_before_a_reset_are_written_first_and_never_after_it(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 10)
        await agg.flushed()
        hits(agg, "o/r", 5)  # pending when the reset begins
        async with agg.exclusive():
            assert not agg.pending, "every count before the reset is in the store"
            hits(agg, "o/r", 3)  # during it: written after it, as counts that came after
            change = await stored_keys(store, stats.keys, "o/r", "hit", False)
            await store.edit(change)
        await agg.flushed()
        assert await totals(stats, "o/r") == (3, 3)


async def test_no_batch_is_written_during_a_change(store: Store) -> None:
    async with running(store) as (agg, stats):
        hits(agg, "o/r", 1)
        async with agg.exclusive():
            hits(agg, "o/r", 1)
            flushing = asyncio.create_task(agg.flush())
            await asyncio.sleep(0.2)  # four flush intervals
            assert not flushing.done()
            assert (await store.read([stats.keys.counter("o%2Fr", "hit")], "")).hashes[0] == {
                TODAY[0]: 1
            }
        await flushing
        await agg.flushed()
        assert await totals(stats, "o/r") == (2, 2)


async def test_flushed_returns_at_once_when_nothing_waits(store: Store) -> None:
    async with running(store) as (agg, _):
        await asyncio.wait_for(agg.flushed(), 1)


@pytest.mark.parametrize("account", ["all", "o/*"])
def test_rollups_are_no_ids(account: str) -> None:
    from tallyd.owner import _id
    from tallyd.web import HTTPError

    with pytest.raises(HTTPError) as err:
        _id(account, "hit")
    assert err.value.error == "reserved_account"


# -- over HTTP, on real `tallyd serve` processes -----------------------------------

TOKEN = "s3cret-owner-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID = "/api/admin/o%2Fr/hit"


def figure(server: Server, metric: str = "total", count: bool = False) -> int:
    """A badge's figure from its endpoint JSON; `count` counts a view too."""
    r = server.get("/badge/o/r.json", metric=metric, format="plain", increment=str(int(count)))
    return int(r.json()["message"])


def view(server: Server, n: int) -> None:
    for _ in range(n):
        assert server.get("/badge/o/r.svg").status_code == 200


def owner_lines(server: Server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "owner action:" in line]


def refused(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == error and r.json()["detail"]


def test_owner_actions_are_off_without_a_token(server: Server) -> None:
    view(server, 2)
    for method, path, body in (
        ("PUT", ID + "/baseline", {"baseline": 5}),
        ("DELETE", ID + "/counts", None),
        ("DELETE", ID, None),
    ):
        # Whatever a client sends: there is no token to match.
        for headers in ({}, AUTH, {"Authorization": "Bearer"}):
            r = server.client.request(method, path, json=body, headers=headers)
            refused(r, 403, "owner_actions_off")
    assert figure(server) == 2
    assert owner_lines(server) == []


def test_a_missing_or_wrong_token_is_refused(server_factory: type[Server], tmp_path: Path) -> None:
    config = tmp_path / "tallyd.toml"
    config.write_text(f'admin_token = "{TOKEN}"\n')  # a file, not a flag that ps shows
    server = server_factory(tmp_path, "--config", str(config)).start()
    view(server, 2)
    wrong = [
        {"Authorization": f"Bearer {TOKEN[:-1]}x"},  # same length
        {"Authorization": f"Bearer {TOKEN}0"},
        {"Authorization": "Bearer short"},
    ]
    for method, path in (("PUT", ID + "/baseline"), ("DELETE", ID + "/counts"), ("DELETE", ID)):
        body = {"baseline": 5} if method == "PUT" else None
        for headers in ({}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
            r = server.client.request(method, path, json=body, headers=headers)
            refused(r, 401, "missing_token")
            assert r.headers["www-authenticate"].startswith("Bearer")
        for headers in wrong:
            refused(
                server.client.request(method, path, json=body, headers=headers), 403, "bad_token"
            )
    assert figure(server) == 2
    assert owner_lines(server) == []
    assert TOKEN not in server.log.read_text()


@pytest.fixture(params=["sqlite", "redis", "redis+cluster"])
def owned(request: pytest.FixtureRequest, server_factory: type[Server], tmp_path: Path) -> Server:
    """A server with owner actions on, over each store."""
    store = None
    if request.param != "sqlite":
        fixture = "redis_url" if request.param == "redis" else "cluster_url"
        store = request.getfixturevalue(fixture)
    return server_factory(tmp_path, "--admin-token", TOKEN, store=store).start()


def test_owner_actions_are_applied_with_the_token(owned: Server) -> None:
    server = owned
    view(server, 3)
    r = server.client.put(ID + "/baseline", json={"baseline": 1000}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"account": "o/r", "event": "hit", "action": "baseline", "baseline": 1000}
    # In the total, not in today's count (nor in the owner's rollup).
    assert (figure(server), figure(server, "today")) == (1003, 3)
    assert figure(server, count=True) == 1004
    assert int(server.get("/badge/o/*.json", format="plain").json()["message"]) == 4

    r = server.client.delete(ID + "/counts", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "reset"
    assert (figure(server), figure(server, "today")) == (0, 0)
    view(server, 2)  # counted from zero
    assert (figure(server), figure(server, "today")) == (2, 2)
    listed = server.get("/api/accounts", event="hit").json()["accounts"]
    assert listed == ["o/r"], "a reset keeps the id"

    r = server.client.delete(ID, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "delete"
    assert server.get("/api/accounts", event="hit").json()["accounts"] == []
    assert server.get("/api/stats/track/o%2Fr/hit").json()["total"] == 0
    assert server.get("/api/top", event="hit").json()["top"] == []
    assert figure(server) == 0

    lines = owner_lines(server)
    assert len(lines) == 3, lines
    for line, action in zip(lines, ("baseline", "reset", "delete"), strict=True):
        assert f"owner action: {action} of 'o/r' event 'hit'" in line
        assert "by 127.0.0.1" in line
    assert TOKEN not in server.log.read_text()


def test_counts_not_written_before_a_reset_are_not_written_after_it(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # Hits wait in memory for a long flush interval when the reset comes.
    server = server_factory(
        tmp_path, "--admin-token", TOKEN, "--flush-interval", "3", "--max-batch-cells", "100000"
    ).start()
    view(server, 5)
    assert figure(server) == 5
    assert server.client.delete(ID + "/counts", headers=AUTH).status_code == 200
    time.sleep(3.5)  # past the next flush: nothing of the 5 comes back
    assert server.get("/api/stats/track/o%2Fr/hit").json()["total"] == 0
    assert figure(server) == 0
    server.restart()  # nor does the last flush at a stop
    assert figure(server) == 0


def test_bad_owner_requests_are_refused_with_a_reason(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--admin-token", TOKEN).start()
    for body in ({}, {"baseline": -1}, {"baseline": 1.5}, {"baseline": "7"}, [1], None):
        r = server.client.put(ID + "/baseline", json=body, headers=AUTH)
        refused(r, 400, "bad_baseline")
    refused(server.client.delete("/api/admin/all/hit", headers=AUTH), 400, "reserved_account")
    refused(server.client.delete("/api/admin/o%2F*/hit", headers=AUTH), 400, "reserved_account")
    assert server.client.get(ID + "/baseline", headers=AUTH).status_code == 405
    assert owner_lines(server) == []


def test_the_token_is_checked_before_the_body_within_the_servers_limit(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--admin-token", TOKEN).start()
    path = "/api/admin/acme/pageview/baseline"
    # Past --max-body, the server refuses before any route: token or not.
    for headers in ({}, {"authorization": f"Bearer {TOKEN}"}):
        big = server.client.put(path, content=b"0" * (3 << 20), headers=headers)
        assert (big.status_code, big.json()["error"]) == (413, "too_large")
    # Within it, the token comes first; the baseline's own 1 KiB only with the token.
    mid = server.client.put(path, content=b"0" * (500 << 10))
    assert (mid.status_code, mid.json()["error"]) == (401, "missing_token")
    owner = server.client.put(
        path, content=b"0" * 2000, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert (owner.status_code, owner.json()["error"]) == (413, "too_large")
    # A client that waits for 100 Continue is refused without sending the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in head


def test_a_token_beyond_printable_ascii_is_refused_as_the_doc_says(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "owner-actions.md").read_text()
    assert "at least 16 characters, printable ASCII without spaces" in doc
    for token in ("é" * 20, "sixteen chars with spaces"):
        with pytest.raises(ValueError, match="printable ASCII without spaces") as err:
            Config.load({"admin_token": token}, env={})
        assert token not in str(err.value)


def test_a_short_token_is_refused_at_start_without_repeating_it(tmp_path: Path) -> None:
    token = "tooshort"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tallyd",
            "serve",
            "--admin-token",
            token,
            "--store",
            f"sqlite:///{tmp_path}/t.db",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "--admin-token must be at least 16 characters" in out.stderr
    assert token not in out.stderr + out.stdout


def test_the_openapi_document_has_the_owner_routes_behind_a_bearer_token(server: Server) -> None:
    doc = server.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
    }
    operations = {
        ("put", "/api/admin/{account}/{event}/baseline"),
        ("delete", "/api/admin/{account}/{event}/counts"),
        ("delete", "/api/admin/{account}/{event}"),
    }
    for method, path in operations:
        op = doc["paths"][path][method]
        assert op["security"] == [{"adminToken": []}]
        assert {"200", "401", "403"} <= set(op["responses"])


def test_a_journal_replayed_after_a_crash_does_not_undo_a_reset(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # Counts stay in the journal and in memory (a long flush interval) until the reset.
    server = server_factory(
        tmp_path, "--durable", "--admin-token", TOKEN, "--flush-interval", "60"
    ).start()
    event = {"event": "hit", "account": "o/r"}
    assert server.post([event] * 5).status_code == 202  # on disk when answered
    assert server.client.delete(ID + "/counts", headers=AUTH).status_code == 200
    assert server.post([event] * 2).status_code == 202
    server.stop(signal.SIGKILL)
    server.start()  # replays the journal: the 2 after the reset, not the 5 before
    assert server.get("/api/stats/track/o%2Fr/hit").json()["total"] == 2
    assert figure(server) == 2


def test_the_token_is_never_repeated_by_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "tallyd.toml"
    config.write_text("admin_token = 1234567890123456789\n")  # a number, not text
    with pytest.raises(ValueError, match="admin_token=…: expected text") as err:
        Config.load({}, env={}, path=str(config))
    assert "1234567890123456789" not in str(err.value)
    with pytest.raises(ValueError, match="at least 16") as err:
        Config.load({}, env={"TALLYD_ADMIN_TOKEN": "guessable"})
    assert "guessable" not in str(err.value)
    with pytest.raises(ValueError, match="without spaces"):
        Config.load({"admin_token": "a token with spaces in it"}, env={})
    loaded = Config.load({}, env={"TALLYD_ADMIN_TOKEN": TOKEN})
    assert loaded.admin_token == TOKEN and TOKEN not in repr(loaded)
