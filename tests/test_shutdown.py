"""Graceful stop: every event acknowledged before SIGTERM is counted after restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Producer, Server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_loses_nothing(
    server_factory: type[Server], tmp_path: Path, sig: int
) -> None:
    # A long flush interval: nearly everything is still in memory when the signal lands.
    server = server_factory(tmp_path, "--flush-interval", "30").start()
    with Producer(server, threads=3, batch=100, accounts=50) as producer:
        time.sleep(1.5)
        assert server.stop(sig) == 0
    acked = producer.acked
    assert acked > 1000 and not producer.errors

    server.start()
    got = server.get("/api/stats/track/all/pageview").json()
    assert got["total"] == acked
    log = server.log.read_text()
    assert "every count written" in log and "Traceback" not in log


def test_counts_survive_restarts(server_factory: type[Server], tmp_path: Path) -> None:
    # Minutes kept forever: the answer checked below is an hour of 2013.
    server = server_factory(tmp_path, "--retention-minutes", "0").start()
    for round_ in range(3):
        assert (
            server.post(
                [{"event": "e", "account": "a", "time": "2013-09-05T14:03:07Z"}] * 5
            ).status_code
            == 202
        )
        server.restart()
        assert server.get("/api/stats/track/a/e/2013/09/05/14").json()["data"]["3"] == 5 * (
            round_ + 1
        )
