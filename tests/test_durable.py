"""`--durable`: a kill -9 loses nothing acknowledged and counts nothing twice (SPEC §8).

Every test here runs real `tallyd serve` processes and kills them with SIGKILL.
Acknowledged means: a 202 for HTTP; for the bus, read off the socket and on disk,
which a producer sees as the count rising (with a journal, only what is on disk
is ever shown).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import zmq

from tests.conftest import Producer, Server, free_port
from tests.test_zmq import ctx, subscribed, total, wait_total, xpub

__all__ = ["ctx"]

pytestmark = pytest.mark.timeout(180)

T = 1_378_389_787  # 2013-09-05T14:03:07Z
BURST = 500


def bus_event(i: int) -> bytes:
    # The Bootic bus's shape, with an id: a producer that re-sends is counted once.
    return b"events " + orjson.dumps(
        {
            "type": "view",
            "id": f"evt-{i:07d}",
            "time": f"2013-09-05T14:{i % 60:02d}:07.250+02:00",
            "data": {"account": f"shop{i % 37}", "path": "/products/\u00e9t\u00e9", "n": 1.5},
        }
    )


class Poster:
    """Threads posting batches of events with ids until the server goes away.

    `acked` counts the events answered 202; a batch without an answer (the kill
    came first) is kept in `unanswered`, to be sent again as a real client would.
    """

    def __init__(self, server: Server, start: int, threads: int = 2, batch: int = 100) -> None:
        self.url = server.url
        self.batch = batch
        self.next = start
        self.acked = 0
        self.unanswered: list[list[dict[str, object]]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Poster:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._threads:
            t.join(15)

    def _take(self) -> list[dict[str, object]]:
        with self._lock:
            first, self.next = self.next, self.next + self.batch
        return [
            {
                "event": "pageview",
                "id": f"h-{i}",
                "account": f"a{i % 400}",
                "time": f"2013-09-05T14:{i % 60:02d}:07.5+02:00",
            }
            for i in range(first, first + self.batch)
        ]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while True:
                events = self._take()
                try:
                    r = c.post("/api/events", json=events)
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered.append(events)
                    return
                if r.status_code != 202 or r.json()["accepted"] != len(events):
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                with self._lock:
                    self.acked += len(events)


def kill(server: Server) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.proc = None


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_kill_9_three_times_under_http_and_bus_load(
    server_factory: type[Server],
    tmp_path: Path,
    ctx: zmq.Context[zmq.Socket[bytes]],
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    store = None if backend == "sqlite" else request.getfixturevalue("redis_url")
    port = free_port()
    pub = xpub(ctx, port)
    # Tell every subscription, also one the socket already has from a peer it has
    # not yet noticed is gone (the one killed).
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    server = server_factory(
        tmp_path,
        "--durable",
        "--journal-dir",
        str(tmp_path / "journal"),
        "--zmq",
        f"tcp://127.0.0.1:{port}",
        store=store,
    )
    acked_http = 0
    posted = 0
    unanswered: list[list[dict[str, object]]] = []
    confirmed = 0  # bus events seen counted (so on disk) before a kill
    sent = 0

    def resend_unconfirmed() -> None:
        # Counts a reader saw before a kill were on disk: they come back whole.
        assert total(server, event_="view") >= confirmed
        # The producer re-sends what it had no confirmation for: with ids, the
        # events that were journaled after all count once.
        for i in range(confirmed, sent):
            pub.send(bus_event(i))
        assert wait_total(server, sent, event_="view") == sent

    for _ in range(3):
        server.start()
        subscribed(pub)
        resend_unconfirmed()
        confirmed = sent
        with Poster(server, start=posted) as producer:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                for i in range(sent, sent + BURST):
                    pub.send(bus_event(i))
                sent += BURST
                assert wait_total(server, sent, event_="view", timeout=10) == sent
                confirmed = sent
            for i in range(sent, sent + BURST):  # one more burst, in flight at the kill
                pub.send(bus_event(i))
            sent += BURST
            kill(server)
        assert not producer.errors
        acked_http += producer.acked
        unanswered.extend(producer.unanswered)
        posted = producer.next
    server.start()
    subscribed(pub)
    resend_unconfirmed()
    # Every acknowledged HTTP event is counted; at most the batches still waiting
    # for their answer at a kill are counted besides (on disk, but not yet answered).
    in_flight = sum(len(b) for b in unanswered)
    assert acked_http <= total(server) <= acked_http + in_flight
    # Sent again, as a client does without an answer: counted once either way.
    for events in unanswered:
        again = server.post(events)
        assert again.status_code == 202
        assert again.json()["accepted"] + again.json()["duplicates"] == len(events)
    time.sleep(0.5)
    assert total(server, event_="view") == sent
    assert total(server) == acked_http + in_flight
    assert acked_http + sent >= 50_000 * 0.5, "the load was too light to mean anything"
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    assert log.count("batch(es) replayed") == 3


def test_ids_resent_after_a_restart_count_once(
    server_factory: type[Server], tmp_path: Path
) -> None:
    events = [
        {
            "type": "order",
            "id": f"o-{i}",
            "time": T + i,
            "data": {"account": "acme", "status": "ok"},
        }
        for i in range(1000)
    ]
    server = server_factory(tmp_path, "--durable").start()
    assert server.post(events).json()["accepted"] == 1000
    kill(server)
    server.start()
    again = server.post(events).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1000
    assert total(server, "acme", "order") == 1000
    assert server.stop() == 0  # and after a graceful stop too
    server.start()
    assert server.post(events[:10]).json()["duplicates"] == 10
    assert total(server, "acme", "order") == 1000


def test_torn_journal_tail_is_dropped_and_the_rest_counted(
    server_factory: type[Server], tmp_path: Path
) -> None:
    # A long flush interval: everything stays in the journal until the kill.
    server = server_factory(tmp_path, "--durable", "--flush-interval", "60").start()
    for i in range(20):
        got = server.post([{"event": "pageview", "account": f"a{i}", "time": T}])
        assert got.status_code == 202
    kill(server)
    journal = Path(f"{server.db}.journal")
    [segment] = list(journal.glob("*.wal"))
    data = segment.read_bytes()
    # Cut the last record in half: a crash in the middle of writing it.
    starts = _record_starts(data)
    assert len(starts) == 20
    # Cut the last request's record in half, and whatever followed it: a crash
    # in the middle of writing it.
    last = starts[-1]
    with open(segment, "r+b") as fh:
        fh.truncate(last + 20)
    server.start()
    assert total(server) == 19
    log = server.log.read_text()
    assert log.count("torn record") == 1
    assert "Traceback" not in log
    assert not list(journal.glob("*.wal")) or all(
        p.name.split(".")[0] != segment.name.split(".")[0] for p in journal.glob("*.wal")
    )


def _record_starts(data: bytes) -> list[int]:
    """Where each data record (not a cut) of a segment starts."""
    from tallyd.journal import DATA, HEADER

    starts, pos = [], 0
    while pos < len(data):
        _, length, _, kind = HEADER.unpack_from(data, pos)
        if kind == DATA:
            starts.append(pos)
        pos += HEADER.size + length
    return starts


def test_without_durable_a_kill_loses_at_most_a_flush_interval(
    server_factory: type[Server], tmp_path: Path
) -> None:
    """The documented bound without --durable (docs/operations.md): what was
    acknowledged in the last flush interval before the kill may be lost."""
    server = server_factory(tmp_path, "--flush-interval", "0.2").start()
    with Producer(server, threads=2, batch=100, accounts=50) as producer:
        time.sleep(1.0)
        # Everything acknowledged half a second before the kill (more than a flush
        # interval and a flush) is in the store; the last moments may not be.
        before = producer.acked
        time.sleep(0.5)
        kill(server)
    acked = producer.acked
    assert before > 500 and not producer.errors
    server.start()
    got = total(server)
    assert before <= got <= acked


def test_a_second_tallyd_on_the_same_journal_is_refused(
    server_factory: type[Server], tmp_path: Path
) -> None:
    first = server_factory(tmp_path, "--durable").start()
    second = server_factory(tmp_path, "--durable")
    with pytest.raises(RuntimeError, match="in use by another tallyd"):
        second.start()
    assert first.post({"event": "pageview", "account": "a", "time": T}).status_code == 202


def test_durable_answers_wait_for_the_disk(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--durable", "--flush-interval", "60").start()
    r = server.post([{"event": "pageview", "account": "a", "time": T}] * 3)
    assert r.status_code == 202
    # Acknowledged means in the journal's files, before any flush to the store.
    journal = Path(f"{server.db}.journal")
    assert sum(p.stat().st_size for p in journal.glob("*.wal")) > 0
    assert total(server) == 3
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/metrics").status_code == 200
    assert os.path.exists(journal / "lock")


def test_ids_survive_a_graceful_restart_without_durable(
    server_factory: type[Server], tmp_path: Path
) -> None:
    events = [{"event": "signup", "id": i, "account": "acme", "time": T} for i in range(100)]
    server = server_factory(tmp_path).start()
    assert server.post(events).json()["accepted"] == 100
    server.restart()  # SIGTERM: the ids remembered are saved beside the data
    assert server.post(events).json()["duplicates"] == 100
    assert total(server, "acme", "signup") == 100
    assert "100 event id(s) remembered" in server.log.read_text()


def test_too_many_ids_shorten_the_window_and_say_so(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--durable", "--dedup-max-ids", "10").start()
    events = [{"event": "signup", "id": f"u{i}", "account": "acme", "time": T} for i in range(30)]
    assert server.post(events).json()["accepted"] == 30
    text = server.get("/metrics").text
    rotations = re.search(r"^tallyd_dedup_early_rotations_total (\S+)$", text, re.M)
    assert rotations is not None and float(rotations.group(1)) >= 5
    # Memory stays bounded: the earliest ids are forgotten, the latest remembered.
    again = server.post(events[-3:] + events[:1]).json()
    assert again["duplicates"] == 3 and again["accepted"] == 1


def test_an_id_is_forgotten_after_the_window(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path, "--dedup-window", "0.5").start()
    event = [{"event": "signup", "id": "u1", "account": "acme", "time": T}]
    assert server.post(event).json()["accepted"] == 1
    assert server.post(event).json()["duplicates"] == 1
    # Remembered for at least the window and at most twice it (two generations).
    time.sleep(1.2)
    server.post([{"event": "signup", "id": "other", "account": "acme", "time": T}])
    time.sleep(0.6)
    assert server.post(event).json()["accepted"] == 1
    assert total(server, "acme", "signup") == 3


def test_a_damaged_record_is_dropped_alone_and_its_events_can_be_sent_again(
    server_factory: type[Server], tmp_path: Path
) -> None:
    from tallyd.journal import HEADER

    server = server_factory(tmp_path, "--durable", "--flush-interval", "60").start()
    events = [{"event": "pageview", "id": f"j{i}", "account": "a", "time": T} for i in range(20)]
    for e in events:
        assert server.post([e]).status_code == 202
    kill(server)
    [segment] = list(Path(f"{server.db}.journal").glob("*.wal"))
    data = bytearray(segment.read_bytes())
    starts = _record_starts(bytes(data))
    assert len(starts) == 20  # one record a request
    data[starts[4] + HEADER.size + 3] ^= 0x40  # inside the fifth request's record
    segment.write_bytes(bytes(data))
    server.start()
    assert total(server) == 19
    assert "failing its checksum" in server.log.read_text()
    # Its event was never counted, and its id never remembered: sent again, it counts.
    again = server.post(events).json()
    assert again["accepted"] == 1 and again["duplicates"] == 19
    assert total(server) == 20
    metrics = server.get("/metrics").text
    assert "tallyd_journal_damage_total 1" in metrics


def test_a_journal_deleted_under_tallyd_stops_acknowledging(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path, "--durable").start()
    assert server.post([{"event": "pageview", "account": "a", "time": T}]).status_code == 202
    for p in Path(f"{server.db}.journal").glob("*.wal"):
        p.unlink()
    r = server.post([{"event": "pageview", "account": "a", "time": T}])
    assert r.status_code == 503 and r.json()["error"] == "not_durable"
    health = server.get("/healthz")
    assert health.status_code == 503 and health.json()["error"] == "journal_unavailable"
    r = server.post([{"event": "pageview", "account": "a", "time": T}])
    assert r.status_code == 503 and r.json()["error"] == "not_durable"
    # What was acknowledged before still goes to the store (a journal that cannot
    # be written is no reason to keep it from there), and a stop says so.
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "every count written" in log
    server.start()
    assert total(server) == 1


def test_a_journal_is_replayed_into_its_own_store_only(
    server_factory: type[Server], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    first = server_factory(
        tmp_path, "--durable", "--journal-dir", str(journal), "--flush-interval", "60"
    ).start()
    assert first.post([{"event": "pageview", "account": "a", "time": T}] * 5).status_code == 202
    kill(first)
    other = server_factory(
        tmp_path, "--durable", "--journal-dir", str(journal), db=tmp_path / "other.db"
    )
    with pytest.raises(RuntimeError, match="holds counts for sqlite:"):
        other.start()
    # Started again without --durable on its own store, the journal is still written.
    first.args = ["--journal-dir", str(journal)]
    first.start()
    assert total(first) == 5
    assert not list(journal.glob("*.wal"))
    assert "5 event(s) in all" in first.log.read_text()
