"""`tallyd export` / `tallyd import` between real stores: SQLite files, a Redis
server and a 3-master Redis Cluster, through the command line and `tallyd serve`."""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tallyd import hll, transfer
from tallyd.stores.base import Contents, StoreError
from tallyd.stores.sqlite import SQLiteStore
from tests.conftest import RedisCluster, RedisServer, Server

pytestmark = pytest.mark.timeout(120)
KEEP_ALL = ("--retention-minutes", "0", "--retention-hours", "0")


def tallyd(*args: str, stderr: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    return subprocess.run(
        [sys.executable, "-m", "tallyd", *args],
        capture_output=stderr is None,
        stderr=stderr,
        text=True,
        timeout=60,
        env=env,
    )


def ok(*args: str) -> str:
    done = tallyd(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def body(path: Path) -> list[str]:
    """A file's records in order, its header and last line left out."""
    lines = path.read_text().splitlines()
    assert orjson.loads(lines[0])["tallyd"] == "export"
    assert orjson.loads(lines[-1]) == {"end": {"records": len(lines) - 2}}
    return sorted(lines[1:-1])


def events() -> list[dict[str, Any]]:
    now = int(datetime.now(UTC).timestamp())
    out: list[dict[str, Any]] = []
    for i in range(300):
        account = ["acme", "shop7", "ben/bash", "ben/dots", "z%y"][i % 5]
        when = 1_357_000_000 + i * 86_400 * 2 + i * 3_607 if i % 3 else now - i * 60
        out.append({"type": "pageview", "data": {"account": account}, "time": when})
        if i % 4 == 0:
            status = ["paid", "pending", "rés"][i % 3]
            out.append(
                {"type": "order", "data": {"account": account, "status": status}, "time": when}
            )
    return out


ANSWERS = [
    "/api/stats/track/acme/pageview",
    "/api/stats/track/all/pageview/2013",
    "/api/stats/track/ben%2Fbash/pageview/2013/05",
    "/api/stats/track/ben%2F*/pageview/2014",
    "/api/stats/track/z%25y/pageview/2013/03/27",
    "/api/stats/funnels/all/order/2013",
    "/api/stats/funnels/shop7/order/2014/02",
    "/api/accounts?event=pageview",
    "/api/top?event=pageview&period=month&date=2013-05",
    "/badge/ben/bash.json?metric=today",
    "/badge/ben/bash.json?metric=unique",
    "/badge/ben/*.json?metric=30d",
]


def answers(server: Server) -> dict[str, Any]:
    out = {}
    for path in ANSWERS:
        r = server.client.get(path)
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()
    return out


def fill(server: Server) -> dict[str, Any]:
    """Count events and badge views, then stop: the answers of a tallyd started
    afresh on the store (badges keep a figure for --badge-refresh seconds)."""
    assert server.post(events(), wait="flush").status_code == 202
    for i in range(40):  # distinct visitors for metric=unique
        server.client.get("/badge/ben/bash.svg", headers={"X-Forwarded-For": f"10.0.0.{i}"})
    server.restart()
    said = answers(server)
    assert server.stop() == 0
    return said


def test_sqlite_to_cluster_and_back(
    server_factory: type[Server], tmp_path: Path, cluster_url: str
) -> None:
    """Every count, index, ranking, sketch and expiry survives SQLite → Redis
    Cluster → SQLite, and tallyd answers the same on each."""
    first = server_factory(tmp_path, *KEEP_ALL).start()
    before = fill(first)
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    said = ok("export", "--store", first.store, "--out", str(a))
    assert said.startswith("exported ") and "sketches" in said
    kinds = {next(iter(orjson.loads(line))) for line in body(a)}
    assert kinds == {"key", "index", "ranking", "unique", "expire"}

    ok("import", str(a), "--mode", "set", "--store", cluster_url)
    ok("export", "--store", cluster_url, "--out", str(b))
    assert body(b) == body(a)
    on_cluster = server_factory(tmp_path, *KEEP_ALL, store=cluster_url).start()
    assert answers(on_cluster) == before
    on_cluster.stop()

    back = f"sqlite:///{tmp_path}/back.db"
    ok("import", str(b), "--store", back)
    ok("export", "--store", back, "--out", str(c))
    assert body(c) == body(a)
    again = server_factory(tmp_path, *KEEP_ALL, store=back).start()
    assert answers(again) == before


def refused_after(src: Path, good: bytes, cases: list[tuple[bytes, str]]) -> None:
    """Each case's line, written after the `good` one, is refused as line 2 of `src`
    for the reason its pattern names."""
    for line, why in cases:
        src.write_bytes(good + line + b"\n")
        with pytest.raises(transfer.BadLine, match=f"{src} line 2: .*{why}"):
            transfer.check_file(str(src))


def cell_file(path: Path, cells: int, bad_at: int = 0) -> None:
    """A file of `cells` counter cells of distinct days, with a bad line at `bad_at`."""
    lines = []
    for i in range(cells):
        y, rest = divmod(i, 12 * 28)
        key = f"a{i % 7}/pageview/{2000 + y}/{rest // 28 + 1:02d}"
        lines.append(orjson.dumps({"key": key, "field": f"{rest % 28 + 1:02d}", "count": i + 1}))
    if bad_at:
        lines[bad_at - 1] = b'{"key": "a1/pageview/2013", "field": "13", "count": 1}'
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_set_twice_changes_nothing_add_twice_is_refused(tmp_path: Path, redis_url: str) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 10_500)
    out1, out2 = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    said = ok("import", str(src), "--mode", "set", "--store", redis_url)
    assert "10,500 records" in said and "3 parts written" in said
    ok("export", "--store", redis_url, "--out", str(out1))
    ok("import", str(src), "--mode", "set", "--store", redis_url)
    ok("export", "--store", redis_url, "--out", str(out2))
    assert body(out1) == body(out2)

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    ok("import", str(src), "--store", redis_url)
    assert r.hget("a0/pageview/2000/01", "01") == "1"
    refused = tallyd("import", str(src), "--store", redis_url)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "would count it twice" in refused.stderr
    assert r.hget("a0/pageview/2000/01", "01") == "1"
    said = ok("import", str(src), "--force", "--store", redis_url)
    assert "again (--force)" in said
    assert r.hget("a0/pageview/2000/01", "01") == "2"
    assert r.exists("tallyd:import-runs") == 0
    # Bookkeeping keys are tallyd's own: none is exported.
    assert all("tallyd:" not in line for line in body(out1))


def test_a_bad_line_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 10_500, bad_at=10_001)
    store = f"sqlite:///{tmp_path}/t.db"
    done = tallyd("import", str(src), "--store", store)
    assert done.returncode == 1
    assert done.stderr == (
        f"tallyd import: {src} line 10001: '13' is not a period field of "
        "'a1/pageview/2013'; nothing was written\n"
    )
    # Checked before the store is opened: no new store is left behind either.
    assert not (tmp_path / "t.db").exists()
    cases = [
        (b"[1, 2]", "not a JSON object"),
        (b'{"key": "tallyd:batches", "field": "n", "count": 1}', "not a counter or funnel key"),
        (b'{"key": "a/b", "field": "2013", "count": 1.5}', "whole number"),
        (b'{"index": "accounts:hit", "member": "a/b"}', "escaped name"),
        (b'{"unique": "unique:a/hit/2013/01/01", "registers": "AAAA"}', "registers"),
        (b'{"key": "a/b", "field": "2013", "count": 1, "x": 1}', "not a record"),
    ]
    refused_after(src, b'{"key": "a/b", "field": "2013", "count": 1}\n', cases)


def test_a_key_of_another_type_fails_its_part_whole(tmp_path: Path, redis_url: str) -> None:
    """Redis keeps what a failing script wrote before the failure: the import's
    script checks every key first."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.set("a1/pageview/2000/01", "not tallyd's")
    src = tmp_path / "cells.jsonl"
    cell_file(src, 100)
    done = tallyd("import", str(src), "--store", redis_url)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "a1/pageview/2000/01 is a string that is not tallyd's" in done.stderr
    assert r.keys("a*") == ["a1/pageview/2000/01"]
    piped = tallyd("import", "/dev/stdin", "--store", redis_url)
    assert piped.returncode == 1 and "is not a file" in piped.stderr
    # A hash of tallyd's whose field holds no whole number: HINCRBY would fail after
    # the part's earlier writes, and the import, resumed, count them twice.
    for odd in ("abc", "05", "-1", "99999999999999999999", "9223372036854775807"):
        r.delete("a1/pageview/2000/01")
        r.hset("a1/pageview/2000/01", "02", odd)
        done = tallyd("import", str(src), "--store", redis_url)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "a1/pageview/2000/01 field 02 holds no count of tallyd's" in done.stderr
        assert r.keys("a*") == ["a1/pageview/2000/01"], odd


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 10)
    db = f"sqlite:///{tmp_path}/t.db"
    for args in [
        ("import", str(src), "--store", "redis://127.0.0.1:1/0"),
        ("export", "--store", "redis://127.0.0.1:1/0"),
        ("export", "--store", "redis+cluster://127.0.0.1:1"),
        ("import", "--from-redis", "redis://127.0.0.1:1/0", "--layout", "ghit", "--store", db),
        ("import", str(tmp_path / "missing.jsonl"), "--store", f"sqlite:///{tmp_path}/t.db"),
    ]:
        done = tallyd(*args)
        assert done.returncode == 1, args
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


class Failing(SQLiteStore):
    """A real SQLite store that fails once, at one part, as a store outage would."""

    fail_at = 3

    async def write(self, part: Contents, mode: str, run: str, seq: int) -> bool:
        if seq == self.fail_at:
            self.fail_at = 0
            raise StoreError("sqlite: disk I/O error")
        return await super().write(part, mode, run, seq)


async def test_an_interrupted_add_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 100)
    monkeypatch.setattr(transfer, "PART", 10)
    store = Failing(f"sqlite:///{tmp_path}/t.db")
    await store.open()
    with pytest.raises(StoreError):
        await transfer.import_file(store, store.url, str(src), "add", False, "")
    said = await transfer.import_file(store, store.url, str(src), "add", False, "")
    assert "resuming the import" in said[0]
    assert "8 parts written, 2 skipped as written before" in said[1]
    total = 0
    async for part in store.scan(lambda key: True):
        total += sum(sum(f.values()) for f in part.counters.values())
    assert total == sum(range(1, 101))
    await store.close()


def test_filters_pick_whole_periods(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, *KEEP_ALL).start()
    fill(server)
    out = tmp_path / "f.jsonl"
    said = ok(
        "export", "--store", server.store, "--out", str(out),
        "--account", "ben/bash", "--event", "pageview", "--from", "2013-05", "--to", "2013-06",
    )  # fmt: skip
    assert said.startswith("exported ")
    found = [orjson.loads(line) for line in body(out)]
    cells = {(r["key"], r["field"]) for r in found if "key" in r}
    assert ("ben%2Fbash/pageview/2013", "05") in cells
    assert ("ben%2Fbash/pageview/2013", "07") not in cells
    assert ("ben%2Fbash/pageview", "2013") not in cells  # the year is more than the range
    base = "ben%2Fbash/pageview/2013"
    assert all(k == base or k.startswith((f"{base}/05", f"{base}/06")) for k, _ in cells)
    assert {r["member"] for r in found if "index" in r} == {"ben%2Fbash", "pageview"}
    rankings = {r["ranking"] for r in found if "ranking" in r}
    assert "top:pageview/2013/05" in rankings
    assert all(k.startswith(("top:pageview/2013/05", "top:pageview/2013/06")) for k in rankings)
    assert tallyd("export", "--from", "2013-07", "--to", "2013-06").returncode == 2


def test_adding_into_a_store_being_written(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    """`--mode add` into a store a running tallyd writes: plain increments, so both
    counts add up, and the server's batch markers are left alone."""
    server = server_factory(tmp_path, *KEEP_ALL, store=redis_url).start()
    event = {"type": "pageview", "data": {"account": "acme"}, "time": "2013-09-05T14:03:07Z"}
    assert server.post([event] * 5, wait="flush").status_code == 202
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    markers = r.hgetall("tallyd:batches")
    src = tmp_path / "more.jsonl"
    src.write_text(
        '{"key": "acme/pageview/2013/09", "field": "05", "count": 100}\n'
        '{"key": "acme/pageview/2013", "field": "09", "count": 100}\n'
    )
    ok("import", str(src), "--store", redis_url)
    assert r.hgetall("tallyd:batches") == markers
    assert server.post([event] * 5, wait="flush").status_code == 202
    month = server.get("/api/stats/track/acme/pageview/2013/09").json()
    assert month["data"]["5"] == 110
    assert server.get("/api/stats/track/acme/pageview/2013").json()["data"]["9"] == 110


def test_sketches_move_between_redis_and_sqlite(tmp_path: Path, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    key = "unique:acme/hit/2013/09/05"
    r.pfadd(key, *(f"visitor-{i}" for i in range(5000)))
    r.pfadd("unique:acme/hit/2013/09/06", "one", "two")  # kept sparse by Redis
    want = {k: r.pfcount(k) for k in (key, "unique:acme/hit/2013/09/06")}
    a = tmp_path / "a.jsonl"
    ok("export", "--store", redis_url, "--out", str(a))
    db = f"sqlite:///{tmp_path}/s.db"
    ok("import", str(a), "--store", db)
    with sqlite3.connect(tmp_path / "s.db") as c:
        blob = c.execute("SELECT registers FROM uniques WHERE key = ?", (key,)).fetchone()[0]
    assert abs(hll.estimate(hll.load(blob)) - 5000) < 5000 * 0.03
    r.flushdb()
    b = tmp_path / "b.jsonl"
    ok("export", "--store", db, "--out", str(b))
    ok("import", str(b), "--store", redis_url)
    assert {k: r.pfcount(k) for k in want} == want
    # Adding merges: the union of the same visitors is the same sketch.
    ok("import", str(b), "--force", "--store", redis_url)
    assert {k: r.pfcount(k) for k in want} == want


def test_the_progress_bar_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 12_000)
    main, other = pty.openpty()
    done = tallyd("import", str(src), "--store", f"sqlite:///{tmp_path}/p.db", stderr=other)
    os.close(other)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    assert done.returncode == 0
    assert b"importing [" in drawn and b"100%" in drawn and b"\r" in drawn
    assert b"imported 12,000 records" in drawn


def test_a_cluster_export_reads_every_master(
    tmp_path: Path, cluster_url: str, redis_cluster: RedisCluster
) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 3000)
    ok("import", str(src), "--store", cluster_url)
    # A finished import leaves its record, not the markers of its parts.
    left = {k for n in redis_cluster.nodes for k in redis.Redis(port=n.port).scan_iter("tallyd:*")}
    assert left == {b"tallyd:imports"}
    out = tmp_path / "out.jsonl"
    said = ok("export", "--store", cluster_url, "--out", str(out))
    assert len(body(out)) == 3000, said
    assert sorted(orjson.loads(line)["count"] for line in body(out)) == list(range(1, 3001))


def test_key_prefixes_are_the_stores_own(tmp_path: Path, redis_server: RedisServer) -> None:
    url = redis_server.url[:-1] + "3"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    src = tmp_path / "cells.jsonl"
    cell_file(src, 5)
    ok("import", str(src), "--store", url, "--key-prefix", "p:")
    assert r.hget("p:a0/pageview/2000/01", "01") == "1"
    out = tmp_path / "out.jsonl"
    ok("export", "--store", url, "--key-prefix", "p:", "--out", str(out))
    assert body(out) == sorted(src.read_text().splitlines())


def test_counts_export_writes_are_counts_import_takes(tmp_path: Path) -> None:
    """One range, 0 to 2^53 - 1, for every count and score: a store's cell past it
    (a sum of imports) fails the export with one line; import refuses a record past it."""
    store = f"sqlite:///{tmp_path}/t.db"
    src = tmp_path / "big.jsonl"
    src.write_text(f'{{"key": "all/hit", "field": "2015", "count": {2**53 - 1}}}\n')
    ok("import", str(src), "--store", store)
    src.write_text('{"key": "all/hit", "field": "2015", "count": 5}\n')
    ok("import", str(src), "--store", store)
    done = tallyd("export", "--store", store, "--out", str(tmp_path / "out.jsonl"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "all/hit field 2015 holds 9,007,199,254,740,996, more than 2^53 - 1" in done.stderr
    src.write_text(f'{{"key": "all/hit", "field": "2015", "count": {2**53}}}\n')
    with pytest.raises(transfer.BadLine, match="from 0 to 2\\^53 - 1"):
        transfer.check_file(str(src))


def test_a_day_that_is_no_date_is_a_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "days.jsonl"
    good = b'{"key": "a/pv/2012/02", "field": "29", "count": 1}\n'
    cases = [
        (b'{"key": "a/pv/2013/02", "field": "30", "count": 1}', "'30' is not a period field"),
        (b'{"key": "a/pv/2013/04", "field": "31", "count": 1}', "'31' is not a period field"),
        (b'{"key": "a/pv/2013/02", "field": "29", "count": 1}', "'29' is not a period field"),
        (b'{"key": "a/pv/2013/02/30", "field": "14", "count": 1}', "names a day that is no"),
        (b'{"expire": "a/pv/2013/02/29/14", "at": 1}', "names a day that is no date"),
        (b'{"ranking": "top:pv/2013/02/30", "member": "a", "score": 1}', "day that is no"),
    ]
    refused_after(src, good, cases)
    src.write_bytes(good)
    assert transfer.check_file(str(src)).records == 1


def test_an_export_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    src = tmp_path / "cells.jsonl"
    cell_file(src, 10_000)
    store = f"sqlite:///{tmp_path}/t.db"
    ok("import", str(src), "--store", store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    export = subprocess.Popen(
        [sys.executable, "-m", "tallyd", "export", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # `tallyd export | head -1`
    assert export.stdout is not None and export.stderr is not None
    assert orjson.loads(export.stdout.readline())["tallyd"] == "export"
    export.stdout.close()
    assert export.wait(timeout=60) == 141  # as a shell shows a process SIGPIPE ended
    assert export.stderr.read() == b""
    export.stderr.close()


def test_export_reads_only_a_store_that_is_there(tmp_path: Path) -> None:
    """A mistyped SQLite path is one line, and no empty database; every summary
    names the store it read or wrote."""
    typo = tmp_path / "typo.db"
    done = tallyd("export", "--store", f"sqlite:///{typo}", "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"no SQLite database {typo}" in done.stderr
    assert not typo.exists() and not (tmp_path / "o.jsonl").exists()
    src = tmp_path / "cells.jsonl"
    cell_file(src, 3)
    store = f"sqlite:///{tmp_path}/new.db"
    assert f"from {src} into {store} (add)" in ok("import", str(src), "--store", store)
    said = ok("export", "--store", store, "--out", str(tmp_path / "o.jsonl"))
    assert said.startswith(f"exported 3 records (3 cells) from {store} (")


TOKEN = "owner-token-of-the-export-tests"
PLAIN = {"format": "plain", "increment": "0"}


def all_time(server: Server) -> dict[str, Any]:
    """What a move must keep of ids with a baseline: badges' totals (an id viewed and
    one never viewed, and their owner's rollup, which has no baseline), the stats
    API's years and the listing."""

    def badge(path: str, **metric: str) -> str:
        message: str = server.get(path, **metric, **PLAIN).json()["message"]
        return message

    return {
        "viewed": badge("/badge/o/r.json"),
        "new": badge("/badge/o/q.json"),
        "today": badge("/badge/o/r.json", metric="today"),
        "owner": badge("/badge/o/*.json"),
        "stats": server.get("/api/stats/track/o%2Fr/hit").json(),
        "listed": server.get("/api/accounts", event="hit").json(),
    }


@pytest.mark.parametrize("target", ["redis_url", "cluster_url"])
def test_baselines_move_with_the_counts(
    server_factory: type[Server], tmp_path: Path, request: pytest.FixtureRequest, target: str
) -> None:
    """An owner's baselines are in the file: after SQLite → Redis (or a Redis
    Cluster) → SQLite, every badge's all-time total is what it was."""
    url: str = request.getfixturevalue(target)
    first = server_factory(tmp_path, "--admin-token", TOKEN).start()
    for _ in range(3):
        assert first.get("/badge/o/r.svg").status_code == 200
    for account, n in (("o%2Fr", 1000), ("o%2Fq", 2**53 - 1)):
        path = f"/api/admin/{account}/hit/baseline"
        r = first.client.put(
            path, json={"baseline": n}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 200, r.text
    first.restart()
    before = all_time(first)
    assert (before["viewed"], before["new"], before["owner"]) == ("1003", str(2**53 - 1), "3")
    assert first.stop() == 0

    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    said = ok("export", "--store", first.store, "--out", str(a))
    assert "2 baselines" in said
    assert '{"baseline":"baseline:o%2Fr/hit","count":1000}' in body(a)
    ok("import", str(a), "--store", url)
    ok("export", "--store", url, "--out", str(b))
    assert body(b) == body(a)
    moved = server_factory(tmp_path, store=url).start()
    assert all_time(moved) == before
    assert moved.stop() == 0

    back = f"sqlite:///{tmp_path}/back.db"
    ok("import", str(b), "--store", back)
    ok("export", "--store", back, "--out", str(c))
    assert body(c) == body(a)
    again = server_factory(tmp_path, store=back).start()
    assert all_time(again) == before


def baseline_of(db: Path, key: str) -> int | None:
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def test_a_file_without_baselines_imports_as_before(tmp_path: Path) -> None:
    """A file the previous version wrote (no baseline records) imports as it did, and
    leaves the baselines a store has alone, with `set` too; a baseline record is
    added (`add`) or put in place (`set`) as a count is."""
    db = tmp_path / "t.db"
    store, key = f"sqlite:///{db}", "baseline:o%2Fr/hit"
    src = tmp_path / "base.jsonl"
    src.write_text('{"baseline": "baseline:o%2Fr/hit", "count": 1000}\n')
    ok("import", str(src), "--store", store)
    old = tmp_path / "old.jsonl"
    old.write_text(
        '{"tallyd":"export","version":1,"store":"sqlite","key_prefix":"","filter":'
        '{"accounts":[],"events":[],"from":null,"to":null}}\n'
        '{"key":"o%2Fr/hit","field":"2013","count":7}\n'
        '{"index":"accounts:hit","member":"o%2Fr"}\n'
        '{"end":{"records":2}}\n'
    )
    for mode in ("add", "set"):
        assert "imported 2 records" in ok("import", str(old), "--mode", mode, "--store", store)
    assert baseline_of(db, key) == 1000
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM counters WHERE key = 'o%2Fr/hit'").fetchone() == (7,)
    ok("import", str(src), "--force", "--store", store)
    assert baseline_of(db, key) == 2000
    ok("import", str(src), "--mode", "set", "--store", store)
    assert baseline_of(db, key) == 1000


def test_baselines_go_with_their_id_and_no_range(tmp_path: Path) -> None:
    """`--account`/`--event` keep their ids' baselines; `--from`/`--to` none: a
    baseline is for all time, which no range holds wholly."""
    store = f"sqlite:///{tmp_path}/t.db"
    src = tmp_path / "src.jsonl"
    src.write_text(
        '{"baseline":"baseline:o%2Fr/hit","count":10}\n'
        '{"baseline":"baseline:acme/hit","count":20}\n'
        '{"baseline":"baseline:acme/pageview","count":30}\n'
        '{"key":"acme/hit","field":"2013","count":1}\n'
    )
    ok("import", str(src), "--store", store)
    out = tmp_path / "out.jsonl"
    ok("export", "--store", store, "--out", str(out))
    assert body(out) == sorted(src.read_text().splitlines())
    said = ok("export", "--store", store, "--account", "acme", "--event", "hit", "--out", str(out))
    assert "1 baselines" in said
    assert [orjson.loads(line) for line in body(out)] == [
        {"baseline": "baseline:acme/hit", "count": 20},
        {"key": "acme/hit", "field": "2013", "count": 1},
    ]
    ok("export", "--store", store, "--from", "2013", "--to", "2013", "--out", str(out))
    assert [orjson.loads(line) for line in body(out)] == [
        {"key": "acme/hit", "field": "2013", "count": 1}
    ]


def test_a_bad_baseline_is_a_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    good = b'{"baseline": "baseline:o%2Fr/hit", "count": 5}\n'
    cases = [
        (b'{"baseline": "baseline:o%2Fr/hit", "count": -1}', "from 0 to 2\\^53 - 1"),
        (b'{"baseline": "baseline:o%2Fr/hit", "count": 9007199254740992}', "from 0 to 2\\^53"),
        (b'{"baseline": "baseline:o%2Fr/hit", "count": "5"}', "whole number"),
        (b'{"baseline": "o%2Fr/hit", "count": 5}', "not a baseline key"),
        (b'{"baseline": "baseline:o/r/hit", "count": 5}', "not a baseline key"),
        (b'{"baseline": "baseline:o%2Fr/hit/2013", "count": 5}', "not a baseline key"),
        (b'{"baseline": "baseline:o%2Fr/hit", "count": 5, "field": "count"}', "not a record"),
        # A baseline comes as its own record, never as a counter cell.
        (b'{"key": "baseline:o%2Fr/hit", "field": "count", "count": 5}', "not a counter or"),
        # Names the owner's route refuses, or escaped otherwise than tallyd escapes
        # them: no badge would ever show such a baseline.
        (b'{"baseline": "baseline:all/hit", "count": 5}', "rollup of other accounts"),
        (b'{"baseline": "baseline:o%2F%2A/hit", "count": 5}', "rollup of other accounts"),
        (b'{"baseline": "baseline:x%0Ay/hit", "count": 5}', "control characters"),
        (b'{"baseline": "baseline:' + b"a" * 201 + b'/hit", "count": 5}', "longer than 200"),
        (b'{"baseline": "baseline:o%2Fr/hi%74", "count": 5}', "not escaped as tallyd"),
    ]
    refused_after(src, good, cases)
    store = f"sqlite:///{tmp_path}/t.db"
    cell_file(tmp_path / "cells.jsonl", 1)
    ok("import", str(tmp_path / "cells.jsonl"), "--store", store)
    done = tallyd("import", str(src), "--store", store)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.endswith("; nothing was written\n")
    assert baseline_of(tmp_path / "t.db", "baseline:o%2Fr/hit") is None
    src.write_bytes(good)
    assert transfer.check_file(str(src)).records == 1
    # Imports can add a baseline up past the range: the export stops, as for a cell.
    src.write_bytes(b'{"baseline": "baseline:o%2Fr/hit", "count": 9007199254740991}\n')
    ok("import", str(src), "--store", store)
    ok("import", str(src), "--force", "--store", store)
    done = tallyd("export", "--store", store, "--out", str(tmp_path / "out.jsonl"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "baseline:o%2Fr/hit field count holds 18,014,398,509,481,982" in done.stderr


def test_a_ranged_export_with_a_baseline_is_refused(tmp_path: Path) -> None:
    # Only an export of every day holds baselines: one added by hand to a ranged file
    # would be counted again with the file of the next range.
    head = b'{"tallyd": "export", "version": 1, "store": "sqlite", "key_prefix": "", '
    lines = [
        b'{"baseline": "baseline:o%2Fr/hit", "count": 5}',
        b'{"end": {"records": 1}}',
    ]
    src = tmp_path / "ranged.jsonl"
    ranged = b'"filter": {"accounts": [], "events": [], "from": "2026-01-01", "to": null}}'
    src.write_bytes(b"\n".join([head + ranged, *lines]) + b"\n")
    with pytest.raises(transfer.BadLine, match="line 2: a baseline in the export of a date"):
        transfer.check_file(str(src))
    whole = b'"filter": {"accounts": [], "events": [], "from": null, "to": null}}'
    src.write_bytes(b"\n".join([head + whole, *lines]) + b"\n")
    assert transfer.check_file(str(src)).records == 1
