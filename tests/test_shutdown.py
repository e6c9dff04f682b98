"""Graceful stop: every event acknowledged before SIGTERM is counted after restart."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_loses_nothing(
    server_factory: type[Server], tmp_path: Path, sig: int
) -> None:
    # A long flush interval: nearly everything is still in memory when the signal lands.
    server = server_factory(tmp_path, "--flush-interval", "30").start()
    acked = 0
    stop = threading.Event()

    def producer() -> None:
        nonlocal acked
        with httpx.Client(base_url=server.url, timeout=5) as c:
            i = 0
            while not stop.is_set():
                batch = [
                    {
                        "event": "pageview",
                        "account": f"acct{(i + j) % 50}",
                        "time": 1_378_389_787 + (i + j) * 7,
                    }
                    for j in range(100)
                ]
                i += 100
                try:
                    r = c.post("/api/events", json=batch)
                except httpx.TransportError:
                    return
                if r.status_code != 202:
                    return
                acked += r.json()["accepted"]

    threads = [threading.Thread(target=producer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert server.stop(sig) == 0
    stop.set()
    for t in threads:
        t.join(10)
    assert acked > 1000

    server.start()
    got = server.get("/api/stats/track/all/pageview").json()
    assert got["total"] == acked
    log = server.log.read_text()
    assert "every count written" in log and "Traceback" not in log


def test_counts_survive_restarts(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path).start()
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
