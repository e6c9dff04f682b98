"""Slow clients over real sockets: thousands of connections trickling their heads
(slowloris), and more of them than tallyd has descriptors for, while an honest
client views a badge over keep-alive. The driver and the client are the bench's
(bench/slow_clients.py), which measures the latencies; these tests hold the server
to what does not depend on the machine's speed."""

from __future__ import annotations

import re
import resource
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import REPO, Server, wait_until

sys.path.insert(0, str(REPO / "bench"))
from slow_clients import BADGE, EVERY, Honest, SlowClients

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT = 3.0
# The sweep runs every quarter of the shorter timeout and refuses every late head in
# one pass (5,000 of them took ~0.5 s with the machine busy): room for both, and more.
MARGIN = 3.0
CROWD = 5000
FD_LIMIT = 1024
FD_CROWD = 1100


@pytest.fixture(autouse=True)
def _descriptors() -> None:
    # The driver raises its soft limit to the hard one; the crowd has to fit under it.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CROWD + 100:
        pytest.skip(f"the hard open-files limit ({hard}) is below {CROWD + 100}")


def counted(server: Server) -> int:
    """Views of the honest client's badge, as tallyd counts them."""
    badge = quote(BADGE.removeprefix("/badge/").removesuffix(".svg"), safe="")
    got: int = server.get(f"/api/stats/track/{badge}/hit").json()["total"]
    return got


def test_slowloris_heads_get_a_408_at_the_deadline_while_badges_are_served(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--header-timeout", f"{HEADER_TIMEOUT:g}").start()
    slow = SlowClients(server.port, CROWD)
    honest = Honest(server.port)
    try:
        assert slow.ready() == CROWD
        # Each sends its first byte within EVERY of connecting: all are late by then.
        limit = time.monotonic() + EVERY + HEADER_TIMEOUT + MARGIN + 5
        while not slow.done() and time.monotonic() < limit:
            honest.run(0.25)
        crowd = slow.finish()
    finally:
        honest.close()

    assert honest.sent > 100 and honest.ok == honest.sent, honest.errors
    assert max(honest.latencies) < 1.0, sorted(honest.latencies)[-5:]
    assert crowd["answers"] == {"408": CROWD}, crowd["answers"]
    assert crowd["open"] == 0 and not crowd["failed"]
    # From the first byte sent: the server's deadline runs from the byte's arrival.
    ages = crowd["ages"]
    assert min(ages) > HEADER_TIMEOUT, min(ages)
    assert max(ages) < HEADER_TIMEOUT + MARGIN, sorted(ages)[-5:]
    assert server.metric('tallyd_http_errors_total{status="408",error="header_timeout"}') == CROWD
    assert wait_until(lambda: counted(server), honest.ok, timeout=10) == honest.ok
    time.sleep(0.5)  # a view counted twice would show by now
    assert counted(server) == honest.ok
    assert "header_timeout" in server.log.read_text()


def test_slow_heads_refused_are_logged_at_most_once_a_second(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--header-timeout", "1").start()
    began = time.monotonic()
    slow = SlowClients(server.port, 200)  # each asks for a target of its own: GET /?n
    assert slow.ready() == 200
    crowd = slow.finish(wait=EVERY + 1 + MARGIN)
    took = time.monotonic() - began
    assert crowd["answers"] == {"408": 200}
    lines = [x for x in server.log.read_text().splitlines() if "header_timeout" in x]
    assert 1 <= len(lines) <= took + 1, f"{len(lines)} lines in {took:.1f} s: {lines[:3]}"


def test_out_of_descriptors_slow_clients_do_not_shut_out_honest_ones(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--header-timeout", f"{HEADER_TIMEOUT:g}").start()
    assert server.proc is not None
    # The limit set once tallyd runs is the limit it would have started under, past
    # its own raise to the hard limit (test_http_protocol.py tests that raise).
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    assert re.search(rf"Max open files\s+{FD_LIMIT}\s+{FD_LIMIT}", limits), limits
    began = time.monotonic()
    slow = SlowClients(server.port, FD_CROWD, hold=True)  # each one closed is replaced
    honest = Honest(server.port, fresh=True)
    try:
        slow.ready()
        honest.run(6.0)
        crowd = slow.finish()
    finally:
        honest.close()
    took = time.monotonic() - began

    # Over keep-alive, every view is answered; a client arriving on a new connection
    # may be the one accepted with the spare descriptor and closed, but rarely.
    assert honest.sent > 100 and honest.ok == honest.sent, honest.errors
    assert honest.fresh_ok >= honest.fresh_sent // 2, (honest.fresh_ok, honest.fresh_sent)
    assert max(honest.latencies) < 1.0, sorted(honest.latencies)[-5:]
    # The crowd did not fit: the server closed some to make room.
    assert crowd["opened"] > FD_CROWD and sum(crowd["answers"].values()) > 0, crowd
    lines = server.log.read_text().count("out of file descriptors")
    assert 1 <= lines <= took + 1, server.log.read_text()[-2000:]
    assert server.proc.poll() is None
    # The crowd gone, new connections are all served again.
    time.sleep(0.5)
    statuses = [httpx.get(server.url + BADGE).status_code for _ in range(20)]
    assert statuses == [200] * 20
    views = honest.ok + honest.fresh_ok + len(statuses)
    assert wait_until(lambda: counted(server), views, timeout=10) == views
    time.sleep(0.5)
    assert counted(server) == views
