"""`tallyd serve --workers N`: real worker processes on one port, a real bus, real Redis."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import zmq

from tests.conftest import Producer, Server, free_port, udp_port, wait_until
from tests.test_zmq import event, xpub

pytestmark = pytest.mark.timeout(90)

VIEWS = 20_000
BUS = 100_000
ACCOUNTS = 200


def workers_of(server: Server) -> list[int]:
    """The supervisor's children: its worker processes."""
    assert server.proc is not None
    pid = server.proc.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def total(server: Server, account: str = "all", event_: str = "pageview") -> int:
    got: int = server.get(f"/api/stats/track/{quote(account, safe='')}/{event_}").json()["total"]
    return got


def views(port: int, ids: list[str], each: int, threads: int = 8) -> int:
    """Badge views of every id, `each` times, over keep-alive connections (one per thread)."""
    done = [0] * threads

    def run(t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in range(t, len(ids) * each, threads):
            conn.request("GET", f"/badge/{ids[n % len(ids)]}.svg")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            done[t] += 1
        conn.close()

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(60)
    return sum(done)


def send_badge_lines(port: int, n: int) -> None:
    """`n` nginx badge lines to a syslog UDP port, from 16 source ports, as nginx's
    workers send them: the kernel spreads them over the workers' sockets."""
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    for i in range(n):
        line = f'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","o%2Fr{i % 10}"'
        senders[i % len(senders)].sendto(line.encode(), ("127.0.0.1", port))
        if i % 500 == 499:
            time.sleep(0.01)  # the kernel's buffers are large, not endless
    for sender in senders:
        sender.close()


def answered_by(server: Server, tries: int = 40) -> set[int]:
    """Which workers answer /healthz over fresh connections."""
    seen = set()
    for _ in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        seen.add(orjson.loads(conn.getresponse().read())["worker"])
        conn.close()
    return seen


def test_two_workers_count_badges_and_the_bus_exactly_once(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = free_port()
    pub = xpub(ctx, port)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, not only the first of a topic
    server = server_factory(
        tmp_path, "--workers", "2", "--zmq", f"tcp://127.0.0.1:{port}", store=redis_url
    ).start()
    try:
        # Each worker subscribes on its own: the publisher sees two subscriptions.
        for _ in range(2):
            assert pub.poll(15_000), "a worker never subscribed"
            pub.recv()
        assert answered_by(server) == {0, 1}
        ids = [f"o/r{i}" for i in range(100)]
        started = time.monotonic()
        assert views(server.port, ids, VIEWS // len(ids)) == VIEWS
        for i in range(BUS):
            pub.send(b"events " + event(f"acct{i % ACCOUNTS}", i))
        assert wait_until(lambda: total(server), BUS, timeout=40) == BUS, server.log.read_text()[
            -3000:
        ]
        elapsed = time.monotonic() - started
        assert total(server, "all", "hit") == VIEWS
        for account in ("acct0", "acct7", f"acct{ACCOUNTS - 1}"):
            assert total(server, account) == BUS // ACCOUNTS
        assert total(server, "o/r42", "hit") == VIEWS // len(ids)
        # The last views, then a stop at once: each worker's last flush writes them.
        assert views(server.port, ids, 1) == len(ids)
        assert server.stop() == 0
    finally:
        pub.close(linger=0)
        ctx.destroy(linger=0)
    log = server.log.read_text()
    assert log.count("stopped: every count written") == 2
    assert "[0]: stopped: every count written" in log and "[1]: stopped" in log
    assert "every worker exited cleanly" in log
    assert "Traceback" not in log
    plain = server_factory(tmp_path, store=redis_url).start()
    assert total(plain, "all", "hit") == VIEWS + len(ids)
    assert total(plain) == BUS
    assert plain.stop() == 0
    print(f"{VIEWS} views and {BUS} bus events counted in {elapsed:.1f}s")


def test_a_killed_worker_is_restarted_and_loses_nothing_acknowledged(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    journal = tmp_path / "journal"
    server = server_factory(
        tmp_path, "--workers", "2", "--durable", "--journal-dir", str(journal), store=redis_url
    ).start()
    first = workers_of(server)
    assert len(first) == 2
    with Producer(server, threads=4, batch=50) as producer:
        time.sleep(1.5)
        os.kill(first[0], signal.SIGKILL)
        time.sleep(1.0)
    acked = producer.acked
    assert acked > 1000, producer.errors
    # The supervisor starts a new worker in its place, which replays its journal.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        len(workers_of(server)) < 2 or answered_by(server, 20) != {0, 1}
    ):
        time.sleep(0.1)
    now = workers_of(server)
    assert len(now) == 2 and first[0] not in now and first[1] in now
    log = server.log.read_text()
    assert "exited with signal 9" in log and "restarting in" in log
    # Whatever a client was told was accepted is counted; a batch without an answer
    # (cut off by the kill) may or may not be, as with one process.
    got = wait_until(lambda: total(server), acked, timeout=15)
    assert acked <= got <= acked + 4 * 50
    assert server.stop() == 0
    log = server.log.read_text()
    assert log.count("stopped: every count written") == 2
    assert "batch(es) replayed" in log or got == acked
    assert (journal / "worker-0").is_dir() and (journal / "worker-1").is_dir()


def _state(pid: int) -> str:
    """A process's state letter (`Z`: dead, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_a_stop_while_a_killed_worker_waits_to_restart_exits_2_and_says_so(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--workers", "2").start()
    first = workers_of(server)
    log = server.log.read_text()
    started = dict(re.findall(r"worker (\d) started \(pid (\d+)\)", log))
    assert sorted(started) == ["0", "1"] and sorted(map(int, started.values())) == sorted(first)
    # The supervisor held still while a worker dies and the stop is asked: it finds
    # both at once when it runs again, so the dead worker is never replaced.
    assert server.proc is not None
    supervisor = server.proc.pid
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(first[0], signal.SIGKILL)
        while Path(f"/proc/{first[0]}").exists() and "Z" not in _state(first[0]):
            time.sleep(0.01)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    assert server.stop() == 2
    log = server.log.read_text()
    index = next(i for i, pid in started.items() if int(pid) == first[0])
    assert f"supervisor: stopped; worker {index} exited with signal 9" in log
    assert log.count("stopped: every count written") == 1  # the other worker's


def test_workers_share_the_syslog_port_and_count_each_datagram_once(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    port = udp_port()
    server = server_factory(
        tmp_path, "--workers", "2", "--syslog", f"udp://127.0.0.1:{port}", store=redis_url
    ).start()
    send_badge_lines(port, 4000)
    assert wait_until(lambda: total(server, "all", "hit"), 4000, timeout=20) == 4000
    assert server.stop() == 0
    log = server.log.read_text()
    # Both workers took datagrams: each logs what it accepted at its stop.
    assert re.search(r"\[0\]: stopped: every count written \(accepted: syslog=\d+", log)
    assert re.search(r"\[1\]: stopped: every count written \(accepted: syslog=\d+", log)


def test_a_journal_left_by_one_process_is_replayed_by_the_workers(
    server_factory: type[Server], tmp_path: Path, redis_url: str
) -> None:
    journal = ["--durable", "--journal-dir", str(tmp_path / "journal")]
    # One process killed after its answer: whatever it had not written by then (it
    # writes when input pauses, its interval is a minute) comes from its journal.
    single = server_factory(tmp_path, *journal, "--flush-interval", "60", store=redis_url)
    single.start()
    events = [{"event": "pageview", "account": f"a{i % 7}"} for i in range(500)]
    assert single.post(events).json()["accepted"] == 500
    assert single.stop(signal.SIGKILL) == -signal.SIGKILL
    server = server_factory(tmp_path, "--workers", "2", *journal, store=redis_url).start()
    assert wait_until(lambda: total(server), 500, timeout=15) == 500
    assert server.stop() == 0
    assert "[0]: journal: 1 batch(es) replayed" in server.log.read_text()


def test_a_busy_port_is_one_line_and_no_workers(
    server_factory: type[Server], tmp_path: Path
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    server = server_factory(tmp_path, "--workers", "2")
    server.port = taken.getsockname()[1]
    with pytest.raises(RuntimeError, match="cannot listen on"):
        server.start()
    assert server.proc is not None and server.proc.wait(5) == 1
    taken.close()


def test_a_port_another_tallyds_workers_hold_is_busy(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # Both would bind with SO_REUSEPORT, which the kernel allows: clients would be
    # split between two services and their stores.
    first = server_factory(tmp_path, "--workers", "2").start()
    (tmp_path / "other").mkdir()
    second = server_factory(tmp_path / "other", "--workers", "2")
    second.port = first.port
    with pytest.raises(RuntimeError, match="cannot listen on"):
        second.start()
    assert second.proc is not None and second.proc.wait(5) == 1
    assert first.get("/healthz").json()["status"] == "ok"


def test_a_syslog_port_another_tallyds_workers_hold_is_busy(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # Both would bind the UDP port with SO_REUSEPORT, which the kernel allows: the
    # datagrams would be split between two services and their stores.
    port = udp_port()
    syslog = ("--syslog", f"udp://127.0.0.1:{port}")
    first = server_factory(tmp_path, "--workers", "2", *syslog).start()
    (tmp_path / "other").mkdir()
    second = server_factory(tmp_path / "other", "--workers", "2", *syslog)
    with pytest.raises(RuntimeError, match=r"cannot listen for syslog on udp://127\.0\.0\.1"):
        second.start()
    assert second.proc is not None and second.proc.wait(5) == 1
    assert "Address already in use" in second.log.read_text()
    # Every datagram still reaches the first service.
    send_badge_lines(port, 200)
    assert wait_until(lambda: total(first, "all", "hit"), 200, timeout=20) == 200


def test_syslog_port_0_is_one_port_for_every_worker_and_logged(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--workers", "2", "--syslog", "udp://127.0.0.1:0").start()
    said = r"syslog: listening on udp://127\.0\.0\.1:(\d+)"
    assert wait_until(lambda: len(re.findall(said, server.log.read_text())), 2, timeout=10) == 2
    ports = set(re.findall(said, server.log.read_text()))
    assert len(ports) == 1 and "0" not in ports, ports
    send_badge_lines(int(ports.pop()), 400)
    assert wait_until(lambda: total(server, "all", "hit"), 400, timeout=20) == 400
