"""`--shard i/N`: which node counts an event from the shared bus; 3 nodes on one cluster."""

from __future__ import annotations

import functools
import re
import time
from collections import Counter as Tally
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import zmq

from tallyd.hotpath import Counter
from tallyd.shard import Shard, for_worker, shard_of
from tests.conftest import Server, free_port, wait_until
from tests.test_zmq import event, xpub

pytestmark = pytest.mark.timeout(120)

T = 1_378_389_787  # 2013-09-05T14:03:07Z
COUNTED, SKIPPED = 1, 3  # hotpath's answers (C constants once compiled)
EVENTS = 300_000
ACCOUNTS = 30


def test_the_hash_is_crc32_of_the_utf8_account() -> None:
    # Fixed values: any platform, any Python, any process must agree with these.
    assert [shard_of(a, 3) for a in ("acme", "benwilber/bashids", "ñandú", "")] == [2, 1, 0, 0]
    assert shard_of("acme", 1_000_003) == 96_778_814 % 1_000_003


def test_shards_and_worker_shares_partition_the_accounts() -> None:
    accounts = [f"a{i}" for i in range(3000)]
    nodes = [Shard(i, 3) for i in range(3)]
    owners = [[n for n in nodes if n.owns(a)] for a in accounts]
    assert all(len(o) == 1 for o in owners)
    for node in nodes:
        parts = [node.split(w, 2) for w in range(2)]
        mine = {a for a in accounts if node.owns(a)}
        assert {a for a in accounts for p in parts if p.owns(a)} == mine
        assert not {a for a in accounts if parts[0].owns(a) and parts[1].owns(a)}
    assert for_worker("", 1, 2) == Shard(1, 2)
    assert for_worker("2/3", 1, 2) == Shard(5, 6)
    assert for_worker("2/3", 0, 1) == Shard(2, 3)
    assert Shard.parse("0/1") is None and Shard.parse("") is None
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_the_fast_path_skips_other_shards_before_counting() -> None:
    names = ["acme", "beta", "gamma", "delta", "zeta"]
    mine = Shard(shard_of("acme", 2), 2)
    other = next(a for a in names if not mine.owns(a))
    cells: dict[tuple[str, str, int, str | None], int] = {}
    counter = Counter({"pageview", *names}, {}, 0, cells, [], shard=mine)
    assert counter.event(event("acme")) == COUNTED
    assert counter.event(event(other)) == SKIPPED
    assert counter.skipped == 1
    assert sum(cells.values()) == 1


def expected(times: list[int], accounts: list[str]) -> dict[tuple[str, str], Tally[str]]:
    """(account, period) → segment → count, for all time (by year) and 2013 (by month)."""
    out: dict[tuple[str, str], Tally[str]] = {}
    for t, account in zip(times, accounts, strict=True):
        d = datetime.fromtimestamp(t, UTC)
        for who in (account, "all"):
            out.setdefault((who, ""), Tally())[str(d.year)] += 1
            out.setdefault((who, str(d.year)), Tally())[str(d.month)] += 1
    return out


def received(node: Server) -> int:
    text = node.get("/metrics").text
    m = re.search(r"^tallyd_zmq_received_total (\d+)", text, re.M)
    return int(m[1]) if m else 0


def test_three_shards_share_one_firehose_and_a_killed_one_loses_nothing_read(
    server_factory: type[Server], tmp_path: Path, cluster_url: str
) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = free_port()
    pub = xpub(ctx, port)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)

    def subscribed(n: int) -> None:
        for _ in range(n):
            assert pub.poll(15_000), "a node never subscribed"
            pub.recv()

    def node(i: int, *extra: str) -> Server:
        flags = ["--zmq", f"tcp://127.0.0.1:{port}", "--shard", f"{i}/3", "--durable"]
        flags += ["--journal-dir", str(tmp_path / f"journal-{i}"), *extra]
        return server_factory(tmp_path, *flags, store=cluster_url)

    # Node 1's interval is a minute, so it writes only when its input pauses (20 ms,
    # tallyd.aggregator): the kill comes 0.5 s after its half, and the replay then
    # finds the batches it wrote and skips them; whatever it had not written comes
    # from its journal. Either way every count must be exact.
    lazy = ("--flush-interval", "60", "--max-batch-cells", "10000000")
    nodes = [node(0).start(), node(1, *lazy).start(), node(2).start()]
    subscribed(3)
    accounts = [f"shop{i % ACCOUNTS}" for i in range(EVENTS)]
    times = [T + (i % 4000) * 3600 + i % 60 for i in range(EVENTS)]  # Sep 2013 to Feb 2014
    started = time.monotonic()
    half = EVENTS // 2
    try:
        for i in range(half):
            pub.send(b"events " + event(accounts[i], times[i] - T))
        assert wait_until(lambda: received(nodes[1]), half, timeout=30) == half
        time.sleep(0.5)  # its last read on disk (the journal syncs within milliseconds)
        assert nodes[1].proc is not None
        nodes[1].proc.kill()
        nodes[1].proc.wait()
        # A SUB socket that is gone gets nothing: the publisher waits for it to be back.
        nodes[1] = node(1).start()
        subscribed(1)
        for i in range(half, EVENTS):
            pub.send(b"events " + event(accounts[i], times[i] - T))
        for n, need in zip(nodes, (EVENTS, EVENTS - half, EVENTS), strict=True):
            assert wait_until(functools.partial(received, n), need, timeout=40) == need
        skipped = [n.get("/metrics").text for n in nodes]
        codes = [n.stop() for n in nodes]
    finally:
        pub.close(linger=0)
        ctx.destroy(linger=0)
    elapsed = time.monotonic() - started
    assert codes == [0, 0, 0]
    logs = [n.log.read_text() for n in nodes]
    assert "batch(es) replayed" in logs[1]
    assert all("Traceback" not in log for log in logs)
    assert all("tallyd_zmq_other_shards_total" in text for text in skipped)

    reader = server_factory(tmp_path, store=cluster_url).start()
    want = expected(times, accounts)
    for (account, period), segments in sorted(want.items()):
        path = f"/api/stats/track/{quote(account)}/pageview" + (f"/{period}" if period else "")
        got = reader.get(path).json()
        assert got["total"] == sum(segments.values()), (account, period)
        assert {k.lstrip("0"): v for k, v in got["data"].items() if v} == dict(segments)
    assert reader.stop() == 0
    print(f"{EVENTS} events through 3 shards (one killed and restarted) in {elapsed:.1f}s")
