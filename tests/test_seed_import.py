"""`tallyd import --from-redis`: a real redis-server filled in each seed's layout,
imported, then read back through `tallyd serve` as users read tallyd."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tallyd.seeds_import import address
from tests.conftest import RedisServer, Server

pytestmark = pytest.mark.timeout(120)
KEEP_ALL = ("--retention-minutes", "0", "--retention-hours", "0")


def tallyd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    return subprocess.run(
        [sys.executable, "-m", "tallyd", *args], capture_output=True, text=True, timeout=60, env=env
    )


def seed(redis_server: RedisServer) -> tuple[str, redis.Redis]:
    """An empty database of the test Redis, for a seed's data."""
    url = redis_server.url[:-1] + "5"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    return url, r


def hit(r: redis.Redis, day: str, repo: str, n: int) -> None:
    """What ghit's syslog-ng destination does for n badge views of `repo` on `day`."""
    r.sadd("repos", repo)
    r.sadd(f"repos:{day}", repo)
    r.incrby(f"repo:{repo}", n)
    r.incrby(f"repo:{day}:{repo}", n)


def test_ghit(server_factory: type[Server], tmp_path: Path, redis_server: RedisServer) -> None:
    url, r = seed(redis_server)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=d) for d in (0, 1, 3)]
    for i, day in enumerate(days):
        hit(r, day.isoformat(), "benwilber%2Fbashids", 1000 + i)
        hit(r, day.isoformat(), "octo%2Fcat", 7)
    hit(r, "2015-12-25", "benwilber%2Fbashids", 5)
    hit(r, "2015-12-25", "ghit", 2)
    r.incrby("repo:octo%2Fcat", 50)  # hits from before ghit kept days
    store = f"sqlite:///{tmp_path}/t.db"

    done = tallyd("import", "--from-redis", url, "--layout", "ghit", "--store", store)
    assert done.returncode == 0, done.stderr
    assert "50 hits in totals but in no day's counter" in done.stderr
    assert "imported 3,081 events of 3 accounts" in done.stderr
    again = tallyd("import", "--from-redis", url, "--layout", "ghit", "--store", store)
    assert again.returncode == 1 and "would count it twice" in again.stderr

    server = server_factory(tmp_path, store=store).start()

    def badge(path: str) -> str:
        answer = server.client.get(path).json()
        assert answer["label"] == "hits", answer
        return str(answer["message"])

    assert badge("/badge/benwilber/bashids.json") == "3,008"  # 1000 + 1001 + 1002 + 5
    assert badge("/badge/benwilber/bashids.json?metric=today") == "1,000"
    assert badge("/badge/benwilber/bashids.json?metric=7d") == "3,003"
    assert badge("/badge/octo/cat.json") == "71"  # 3 days of 7, and 50, as ghit's own badge shows
    assert badge("/badge/octo/*.json") == "71"
    assert badge("/badge/ghit.json") == "2"
    month = server.client.get("/api/stats/track/benwilber%2Fbashids/hit/2015/12").json()
    assert month["data"]["25"] == 5
    top = server.client.get(f"/api/top?event=hit&period=day&date={today.isoformat()}").json()
    assert top["top"] == [
        {"account": "benwilber/bashids", "count": 1000},
        {"account": "octo/cat", "count": 7},  # its 50 undated hits are at its first day
    ]
    listed = server.client.get("/api/accounts?event=hit").json()["accounts"]
    assert listed == ["benwilber/bashids", "ghit", "octo/cat"]
    # Counting goes on where ghit stopped.
    server.client.get("/badge/benwilber/bashids.svg")
    assert badge("/badge/benwilber/bashids.json?metric=today") in ("1,000", "1,001")


def test_bootic_go(server_factory: type[Server], tmp_path: Path, redis_server: RedisServer) -> None:
    url, r = seed(redis_server)
    # The Go aggregator's keys: unpadded parts and fields, `all` written alongside.
    for account, scale in (("acme", 1), ("all", None)):
        extra = 5 if scale is None else 0
        r.hset(f"track:{account}:pageview:2013", mapping={"8": 100, "9": 101 + extra})
        r.hset(f"track:{account}:pageview:2013:8", mapping={"30": 100})
        r.hset(f"track:{account}:pageview:2013:9", mapping={"1": 10, "5": 91 + extra})
        r.hset(f"track:{account}:pageview:2013:9:5", mapping={"14": 60, "9": 30 + extra})
        r.hset(f"funnels:{account}:order:2013", mapping={"paid": 10, "pending": 3})
        r.hset(f"funnels:{account}:order:2013:9", mapping={"paid": 7, "pending": 3})
    r.hset("track:shop2:pageview:2013", mapping={"9": 5})
    r.hset("track:shop2:pageview:2013:9", mapping={"5": 5})
    r.hset("track:shop2:pageview:2013:9:5", mapping={"9": 5})
    r.set("unrelated", "1")
    store = f"sqlite:///{tmp_path}/t.db"

    done = tallyd(
        "import", "--from-redis", url, "--layout", "bootic-go", "--store", store, *KEEP_ALL
    )
    assert done.returncode == 0, done.stderr
    assert "the seed's own `all` matches the sum of its accounts" in done.stderr
    assert "imported 219 events of 2 accounts" in done.stderr  # 201 + 5 pageviews, 13 orders

    server = server_factory(tmp_path, *KEEP_ALL, store=store).start()

    def data(path: str) -> dict[str, int]:
        answer = server.client.get(path).json()
        return {k: v for k, v in answer["data"].items() if v}

    assert data("/api/stats/track/acme/pageview/2013") == {"8": 100, "9": 101}
    assert data("/api/stats/track/acme/pageview/2013/09") == {"1": 10, "5": 91}
    # Hours as the seed kept them; what the day holds beyond them at its first hour.
    assert data("/api/stats/track/acme/pageview/2013/09/05") == {"0": 1, "9": 30, "14": 60}
    assert data("/api/stats/track/all/pageview/2013") == {"8": 100, "9": 106}
    assert data("/api/stats/track/acme/pageview") == {"2013": 201}
    assert data("/api/stats/funnels/acme/order/2013") == {"paid": 10, "pending": 3}
    assert data("/api/stats/funnels/acme/order/2013/09") == {"paid": 7, "pending": 3}
    assert data("/api/stats/funnels/all/order/2013") == {"paid": 10, "pending": 3}
    # An order is an event of its own in tallyd: counted by month, at its first day.
    assert data("/api/stats/track/acme/order/2013") == {"1": 3, "9": 10}
    top = server.client.get("/api/top?event=pageview&period=month&date=2013-09").json()
    assert top["top"] == [{"account": "acme", "count": 101}, {"account": "shop2", "count": 5}]


def test_keys_of_another_type_and_counts_too_large_are_skipped(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Both layouts read a key of another type, or a count past 2^53 - 1, as no
    count: skipped and counted in the summary, the rest imported."""
    url, r = seed(redis_server)
    r.hset("track:acme:pageview:2013", mapping={"9": 5, "10": -2, "11": 1.5, "13": 1})
    r.hset("track:acme:pageview:2013:9", mapping={"5": 5, "6": "99999999999999999999"})
    r.hset("track:acme:pageview:2013:9:5", mapping={"9": 2**53})
    r.set("track:acme:weird:2013", 5)
    r.set("funnels:acme:order:2013", 5)
    r.sadd("track:acme:pageview:2013:8", "x")  # a month of a year hash
    done = tallyd(
        "import", "--from-redis", url, "--layout", "bootic-go",
        "--store", f"sqlite:///{tmp_path}/b.db", *KEEP_ALL,
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "skipped: 2 track: keys of another type than the seed's" in done.stderr
    assert "skipped: 1 funnels: keys of another type than the seed's" in done.stderr
    assert "1 fields of track: hashes that are no day or count" in done.stderr
    assert "1 fields of track: hashes that are no hour or count" in done.stderr
    assert "3 fields of track: hashes that are no month or count" in done.stderr
    assert "imported 5 events of 1 accounts" in done.stderr

    r.flushdb()
    r.set("repo:2015-12-25:w", "99999999999999999999")
    r.set("repo:2015-12-25:v", 2**53 - 4)  # `all` then holds 2^53 - 1: the most
    r.hset("repo:2015-12-25:h", "n", 1)
    r.set("repo:2015-12-25:x", 3)
    done = tallyd(
        "import", "--from-redis", url, "--layout", "ghit", "--store", f"sqlite:///{tmp_path}/g.db"
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "skipped: 1 repo: keys that hold no count" in done.stderr
    assert "skipped: 1 repo: keys of another type than the seed's" in done.stderr
    assert f"imported {2**53 - 1:,} events of 2 accounts" in done.stderr


def test_a_seed_is_known_by_its_address_not_its_url(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url, r = seed(redis_server)
    hit(r, "2015-12-25", "ghit", 3)
    port = url.split(":")[2].split("/")[0]
    store = f"sqlite:///{tmp_path}/t.db"
    ok = tallyd("import", "--from-redis", url, "--layout", "ghit", "--store", store)
    assert ok.returncode == 0, ok.stderr
    for same in (f"redis://localhost:{port}/5", f"redis://127.0.0.1:{port}/05"):
        again = tallyd("import", "--from-redis", same, "--layout", "ghit", "--store", store)
        assert again.returncode == 1 and "would count it twice" in again.stderr, same
    with sqlite3.connect(tmp_path / "t.db") as c:
        found = c.execute("SELECT value FROM counters WHERE key = 'ghit/hit'").fetchall()
    assert found == [(3,)]
    assert f"into {store}" in ok.stderr
    assert address(f"redis://127.0.0.1:{port}") == address(f"redis://127.0.0.1:{port}/0")
    for bad in (f"redis://127.0.0.1:{port}/abc", f"http://127.0.0.1:{port}/0", f"127.0.0.1:{port}"):
        done = tallyd("import", "--from-redis", bad, "--layout", "ghit", "--store", store)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (bad, done.stderr)
        assert "redis://[:PASSWORD@]HOST[:PORT][/DB]" in done.stderr
    for bad in (f"redis://127.0.0.1:{port}/1?x=1", f"redis://127.0.0.1:{port}/1?socket_timout=5"):
        done = tallyd("import", "--from-redis", bad, "--layout", "bootic-go", "--store", store)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (bad, done.stderr)
        assert "unknown option" in done.stderr


def test_an_import_that_finds_nothing_is_not_recorded(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url, r = seed(redis_server)
    r.hset("track:acme:pageview:2013", mapping={"9": 5})  # not ghit's layout
    store = f"sqlite:///{tmp_path}/t.db"
    done = tallyd("import", "--from-redis", url, "--layout", "ghit", "--store", store)
    assert done.returncode == 0, done.stderr
    assert "imported 0 events" in done.stderr and "not recorded" in done.stderr
    hit(r, "2015-12-25", "ghit", 3)
    done = tallyd("import", "--from-redis", url, "--layout", "ghit", "--store", store)
    assert done.returncode == 0, done.stderr
    assert "imported 3 events of 1 accounts" in done.stderr


def test_funnels_of_an_event_also_tracked_are_imported_once(
    server_factory: type[Server], tmp_path: Path, redis_server: RedisServer
) -> None:
    """The Go seed counted an order in track: and in funnels: both: tallyd takes
    the counts from track:, the statuses from funnels:, and no order twice."""
    url, r = seed(redis_server)
    r.hset("track:acme:order:2013", mapping={"9": 3})
    r.hset("track:acme:order:2013:9", mapping={"5": 3})
    r.hset("funnels:acme:order:2013", mapping={"paid": 4})
    r.hset("funnels:acme:order:2013:9", mapping={"paid": 2, "pending": 1})
    store = f"sqlite:///{tmp_path}/t.db"
    done = tallyd(
        "import", "--from-redis", url, "--layout", "bootic-go", "--store", store, *KEEP_ALL
    )
    assert done.returncode == 0, done.stderr
    assert "2 funnels: keys of events also under track: were imported as funnels alone" in (
        done.stderr
    )
    assert "skipped" not in done.stderr
    assert "imported 3 events of 1 accounts" in done.stderr
    server = server_factory(tmp_path, *KEEP_ALL, store=store).start()

    def data(path: str) -> dict[str, int]:
        answer = server.client.get(path).json()
        return {k: v for k, v in answer["data"].items() if v}

    assert data("/api/stats/track/acme/order/2013") == {"9": 3}
    assert data("/api/stats/track/acme/order/2013/09") == {"5": 3}
    assert data("/api/stats/track/all/order/2013") == {"9": 3}
    assert data("/api/stats/funnels/acme/order/2013") == {"paid": 4, "pending": 1}
    assert data("/api/stats/funnels/acme/order/2013/09") == {"paid": 2, "pending": 1}
    assert data("/api/stats/funnels/all/order/2013") == {"paid": 4, "pending": 1}
