"""tallyd on a real Redis: the seed's layout, escaping, retention, outages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.conftest import Producer, RedisServer, Server, require

pytestmark = pytest.mark.timeout(120)


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def test_the_first_seeds_layout(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    server = server_factory(
        tmp_path,
        f"--redishost=127.0.0.1:{port}",
        "--retention-minutes",
        "0",
        "--retention-hours",
        "0",
        store="sqlite:///unused.db",
    ).start()
    events = [
        {"type": "pageview", "data": {"account": "acme"}, "time": f"2013-{m:02d}-05T14:03:07Z"}
        for m in (8, 9, 9)
    ]
    events.append(
        {
            "type": "order",
            "data": {"account": "acme", "status": "paid"},
            "time": "2013-09-05T14:03:07Z",
        }
    )
    assert server.post(events, wait="flush").status_code == 202
    r = client(redis_url)
    assert r.hgetall("acme/pageview/2013") == {"08": "1", "09": "2"}
    assert r.hgetall("acme/pageview/2013/09") == {"05": "2"}
    assert r.hgetall("acme/pageview/2013/09/05") == {"14": "2"}
    assert r.hgetall("acme/pageview/2013/09/05/14") == {"03": "2"}
    assert r.hgetall("acme/pageview") == {"2013": "3"}
    assert r.hgetall("all/pageview/2013") == {"08": "1", "09": "2"}
    assert r.hgetall("funnels:acme/order/2013") == {"paid": "1"}
    assert r.hgetall("funnels:all/order/2013/09") == {"paid": "1"}
    assert r.zrangebylex("accounts:pageview", "-", "+") == ["acme"]
    assert r.zrange("top:pageview/2013/09/05", 0, -1, withscores=True) == [("acme", 2.0)]
    assert r.zrange("top:pageview/2013/09", 0, -1, withscores=True) == [("acme", 2.0)]
    assert r.zrangebylex("events", "-", "+") == ["order", "pageview"]
    assert r.ttl("acme/pageview/2013/09/05/14") == -1  # retention 0: kept forever
    assert server.get("/api/stats/track/acme/pageview/2013").json()["data"]["9"] == 2


def test_retention_ttls(server_factory: type[Server], tmp_path: Path, redis_url: str) -> None:
    server = server_factory(tmp_path, store=redis_url).start()
    now = int(time.time())
    assert server.post({"event": "e", "account": "a", "time": now}, wait="flush").status_code == 202
    r = client(redis_url)
    y, m, d, h = time.strftime("%Y %m %d %H", time.gmtime(now)).split()
    day = 86400
    assert 6 * day < r.ttl(f"a/e/{y}/{m}/{d}/{h}") <= 7 * day + 3600
    assert 399 * day < r.ttl(f"a/e/{y}/{m}/{d}") <= 401 * day
    assert r.ttl(f"a/e/{y}/{m}") == r.ttl(f"a/e/{y}") == r.ttl("a/e") == -1
    # An event older than the retention is counted where it is kept, not in expired hashes.
    old = now - 30 * day
    assert server.post({"event": "e", "account": "a", "time": old}, wait="flush").status_code == 202
    oy, om, od, oh = time.strftime("%Y %m %d %H", time.gmtime(old)).split()
    assert r.exists(f"a/e/{oy}/{om}/{od}/{oh}") == 0
    assert r.hget(f"a/e/{oy}/{om}/{od}", oh) == "1"


def test_escaped_ids_never_collide(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    server = server_factory(tmp_path, store=redis_url).start()
    ids = ["a/b", "a", "b", "x:y", "*", "%", "%2F", "a%2Fb", "café", "日本", "a b", "all/pageview"]
    now = int(time.time())
    for n, i in enumerate(ids, start=1):
        assert (
            server.post(
                [{"event": "pageview", "account": i, "time": now}] * n, wait="flush"
            ).status_code
            == 202
        )
    r = client(redis_url)
    assert r.hgetall("a%2Fb/pageview") == {time.strftime("%Y", time.gmtime(now)): "1"}
    assert r.exists("a/b/pageview") == 0
    for n, i in enumerate(ids, start=1):
        from urllib.parse import quote

        assert server.get(f"/api/stats/track/{quote(i, safe='')}/pageview").json()["total"] == n, i
    assert server.get("/api/stats/track/all/pageview").json()["total"] == sum(
        range(1, len(ids) + 1)
    )
    members = r.zrangebylex("accounts:pageview", "-", "+")
    assert len(members) == len(ids) and all(":" not in m and "/" not in m for m in members)
    assert sorted(
        server.get("/api/accounts", event="pageview", limit="100").json()["accounts"]
    ) == sorted(ids)


def test_redis_outage_loses_nothing(server_factory: type[Server], tmp_path: Path) -> None:
    rs = RedisServer(require("redis-server"), tmp_path / "redis").start()
    try:
        server = server_factory(tmp_path, store=rs.url).start()
        with Producer(server) as producer:
            time.sleep(1.0)
            rs.kill()  # kill -9, mid-load
            time.sleep(1.0)
            health = server.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            # Reads need the store: a clear 503, not a 500.
            r = server.get("/api/stats/track/all/pageview")
            assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
            # A badge never drawn before cannot show its figure, but its view counts;
            # it is still an image (status 200), saying why.
            r = server.get("/badge/outage.svg")
            assert r.status_code == 200 and 'aria-label="hits: unavailable"' in r.text
            assert r.headers["x-tallyd-error"] == "store_unavailable"
            rs.start()  # same port, same append-only file
            time.sleep(1.0)
        acked = producer.acked
        assert not producer.errors
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.get("/healthz").status_code != 200:
            time.sleep(0.1)
        assert server.get("/healthz").status_code == 200
        assert server.get("/api/stats/track/all/pageview").json()["total"] == acked
        assert server.get("/api/stats/track/outage/hit").json()["total"] == 1
        assert server.stop() == 0
        r = client(rs.url)
        assert int(r.hget("all/pageview", "2013") or 0) == acked
        assert acked > 500
    finally:
        rs.stop()


async def test_the_batch_script_names_every_key_it_writes(redis_url: str) -> None:
    """Redis's scripting contract: a script touches only the keys given in KEYS
    (proxies and managed services refuse others; a cluster routes by them)."""
    from tallyd.events import Cell
    from tallyd.expand import Expander
    from tallyd.keys import KeySpace
    from tallyd.periods import Clock
    from tallyd.retention import Retention
    from tallyd.stores.redis import RedisStore, script_call, tables

    minute = 1_378_389_787 // 60
    cells: dict[Cell, int] = {
        ("acme", "order", minute, "paid"): 3,
        ("benwilber/bashids", "hit", minute + 90, None): 2,
    }
    batch = Expander(KeySpace(), Clock("UTC"), Retention(7, 400)).build("n1", 1, cells)
    batch.uniques = {"uniques:x": ["00ff00ff00ff00ff"]}
    store = RedisStore(redis_url)
    await store.open()
    try:
        assert await store.apply(batch)
    finally:
        await store.close()
    keys, _ = script_call(store.batches, *tables(batch))
    written = {k if isinstance(k, str) else k.decode() for k in client(redis_url).keys("*")}
    assert written and written <= set(keys)
    assert any(k.startswith("benwilber%2F%2A/hit") for k in written), sorted(written)
