"""tallyd on a real 3-master Redis Cluster: the same layout, a node restarted mid-load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as SyncCluster

from tests.conftest import Producer, RedisCluster, Server, require

pytestmark = pytest.mark.timeout(180)


def cluster_client(c: RedisCluster) -> SyncCluster:
    return SyncCluster(
        startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in c.nodes], decode_responses=True
    )


def test_layout_on_the_cluster(
    server_factory: type[Server], tmp_path: Path, cluster_url: str, redis_cluster: RedisCluster
) -> None:
    server = server_factory(
        tmp_path, "--retention-minutes", "0", "--retention-hours", "0", store=cluster_url
    ).start()
    events = [
        {"type": "pageview", "data": {"account": f"acct{i}"}, "time": "2013-09-05T14:03:07Z"}
        for i in range(50)
    ]
    assert server.post(events, wait="flush").status_code == 202
    r = cluster_client(redis_cluster)
    assert r.hgetall("acct7/pageview/2013") == {"09": "1"}
    assert r.hgetall("all/pageview/2013/09/05/14") == {"03": "50"}
    assert r.zcard("accounts:pageview") == 50
    # The keys really are spread: every master holds some.
    sizes = [redis.Redis(port=n.port).dbsize() for n in redis_cluster.nodes]
    assert all(size > 0 for size in sizes), sizes
    assert server.get("/api/stats/track/all/pageview/2013/9/5/14").json()["data"]["3"] == 50
    assert server.get("/api/accounts", event="pageview", limit="3").json()["accounts"] == [
        "acct0",
        "acct1",
        "acct10",
    ]


def test_node_restart_mid_load_counts_exactly(server_factory: type[Server], tmp_path: Path) -> None:
    cluster = RedisCluster(require("redis-server"), require("redis-cli"), tmp_path / "cl").start()
    try:
        server = server_factory(tmp_path, store=cluster.url).start()
        with Producer(server, accounts=200) as producer:
            time.sleep(1.0)
            cluster.nodes[1].kill()  # kill -9 one master: its slots are down
            # The next flush that touches its slots fails (how soon depends on the
            # client's retries): health turns degraded meanwhile.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and server.get("/healthz").status_code != 503:
                time.sleep(0.1)
            assert server.get("/healthz").status_code == 503
            cluster.nodes[1].start()  # same port, same data and nodes.conf
            cluster.wait_ok()
            time.sleep(1.0)
        assert not producer.errors and producer.acked > 500
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.get("/healthz").status_code != 200:
            time.sleep(0.2)
        assert server.get("/healthz").status_code == 200
        assert server.get("/api/stats/track/all/pageview").json()["total"] == producer.acked
        assert server.stop() == 0
        r = cluster_client(cluster)
        assert int(r.hget("all/pageview", "2013") or 0) == producer.acked
        per_account = sum(int(r.hget(f"a{i}/pageview", "2013") or 0) for i in range(200))
        assert per_account == producer.acked
    finally:
        cluster.stop()
