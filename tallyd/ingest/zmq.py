"""ZeroMQ ingest: SUB sockets on the event bus (the first seed, SPEC §4).

Frames may be one frame `"<topic> <payload>"` (the Bootic publisher's format;
the topic may be empty), two frames `[topic, payload]`, or a bare payload. A
payload is JSON (an object, or an array of them) or a msgpack map, as the
Bootic bus carried in 2013-14: a msgpack map's first byte is never one a JSON
text starts with, so each frame says which it is.

The receive loop waits on the asyncio socket, then drains up to a batch of
messages with non-blocking receives on a synchronous shadow of the same socket:
one wake-up per batch rather than one future per message. Each batch is read
and counted in one compiled call (`hotpath.receive`), which reads JSON events
straight from the frame and hands only the rest to orjson or msgpack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgpack
import orjson
import zmq
import zmq.asyncio

from tallyd.events import Rejected
from tallyd.hotpath import is_msgpack, receive, track_seq
from tallyd.intake import Intake
from tallyd.shard import Shard

log = logging.getLogger("tallyd.zmq")

SOURCE = "zmq"
BAD_JSON = Rejected("invalid_json", "the frame is not JSON")
BAD_MSGPACK = Rejected("invalid_msgpack", "the frame is not a msgpack map of text")
BATCH = 5000
POLL_MS = 200


def endpoint(text: str) -> str:
    """`localhost:6666` (the seed's `--zmsocket`) → `tcp://localhost:6666`."""
    return text if "://" in text else f"tcp://{text}"


class SeqTracker:
    """Accounts for gaps in per-publisher `seq` numbers.

    A SUB socket cannot see who sent a message, so a publisher is named by the
    event's `publisher` field (`tallyd emit` sends one), or else by the topic.
    The receive loop (`hotpath.receive`) keeps `last` and lists the breaks;
    here they become metrics, and log lines at most once per second with the
    gaps folded in, so a lossy bus cannot flood the log.
    """

    def __init__(self) -> None:
        self.last: dict[Any, int] = {}
        self.gaps = 0
        self.missing = 0
        self._log_after = 0.0
        self._unlogged = 0

    def report(self, breaks: list[tuple[Any, int, int]]) -> None:
        for key, last, seq in breaks:
            if seq <= last:
                log.info("publisher %r restarted its seq at %d (was %d)", key, seq, last)
                continue
            lost = seq - last - 1
            self.gaps += 1
            self.missing += lost
            self._unlogged += lost
            now = time.monotonic()
            if now >= self._log_after:
                log.warning(
                    "seq gap from publisher %r: %d message(s) missing (%d → %d); "
                    "%d missing in all since the last report",
                    key,
                    lost,
                    last,
                    seq,
                    self._unlogged,
                )
                self._unlogged = 0
                self._log_after = now + 1.0


class ZmqSource:
    def __init__(
        self,
        intake: Intake,
        connect: list[str],
        bind: list[str],
        topics: list[str],
        hwm: int = 100_000,
        shard: Shard | None = None,
    ) -> None:
        self.intake = intake
        self.shard = shard
        self.connect = [endpoint(e) for e in connect]
        self.bind = [endpoint(e) for e in bind]
        self.topics = topics or [""]
        self.hwm = hwm
        self.seqs = SeqTracker()
        self.received = 0
        self._ctx = zmq.asyncio.Context()
        self._sock: zmq.asyncio.Socket | None = None
        self._shadow: zmq.Socket[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        m = intake.metrics
        m.counter(
            "tallyd_zmq_seq_gaps_total",
            "Gaps seen in publishers' seq numbers.",
            lambda: self.seqs.gaps,
        )
        m.counter(
            "tallyd_zmq_seq_missing_total",
            "Messages missing according to seq numbers.",
            lambda: self.seqs.missing,
        )
        m.counter("tallyd_zmq_received_total", "ZeroMQ messages received.", lambda: self.received)
        m.counter(
            "tallyd_zmq_other_shards_total",
            "Bus events left to other shards (--shard) or workers (--workers).",
            lambda: intake.other_shards,
        )

    def start(self) -> None:
        """Open the socket (raising zmq.ZMQError on a bad endpoint) and start receiving."""
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        sock.setsockopt(zmq.LINGER, 0)
        for t in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        try:
            for e in self.bind:
                sock.bind(e)
            for e in self.connect:
                sock.connect(e)
        except zmq.ZMQError:
            sock.close()
            raise
        self._sock = sock
        self._shadow = zmq.Socket.shadow(sock.underlying)
        self._task = asyncio.create_task(self._run(), name="zmq")
        log.info(
            "zmq: subscribed to %s%s",
            ", ".join([f"bind {e}" for e in self.bind] + [f"connect {e}" for e in self.connect]),
            f"; counting shard {self.shard} of the accounts" if self.shard else "",
        )

    async def _run(self) -> None:
        assert self._sock is not None
        agg = self.intake.aggregator
        while not self._stopping:
            if agg.behind():
                # Backpressure: the bus queues (to the high-water mark) while the store
                # catches up. While the store is down, cells merge up to the outage limit.
                await asyncio.sleep(0.01)
                continue
            try:
                if not await self._sock.poll(POLL_MS):
                    continue
                received = self._drain(BATCH)
                if agg.journal is not None:
                    # With --durable, what was read is on disk before the next read.
                    await agg.acknowledged()
                elif received == BATCH:
                    await asyncio.sleep(0)  # a full batch: let HTTP and the flusher run
            except zmq.ZMQError as exc:
                log.error("zmq: receive failed: %s", exc)
                await asyncio.sleep(0.1)
            except OSError:
                await asyncio.sleep(1.0)  # the journal failed (it says so): do not spin
            except Exception:
                # A bug must not silently end ingest: log it and keep receiving.
                log.exception("zmq: error counting a batch")

    def _drain(self, limit: int) -> int:
        """Receive and count up to `limit` waiting messages, without blocking."""
        assert self._shadow is not None
        sock = self._shadow
        intake = self.intake
        objs: list[Any] = []
        breaks: list[tuple[Any, int, int]] = []
        received = fast = 0
        now = time.time()
        counter = intake.counter(now, shard=self.shard)
        while received < limit:
            n, counted, odd = receive(
                counter,
                sock.recv,
                limit - received,
                zmq.Again,
                orjson.loads,
                orjson.JSONDecodeError,
                unpack,
                BAD_JSON,
                BAD_MSGPACK,
                self.seqs.last,
                breaks,
                objs,
            )
            received += n
            fast += counted
            if odd is None:
                break
            # Not a whole event in one frame: [topic, payload] in two frames, or junk.
            received += 1
            topic, payload = _rest_of_message(sock, odd)
            objs.extend(_decode_one(topic, payload, self.seqs.last, breaks))
        if breaks:
            self.seqs.report(breaks)
        if received:
            self.received += received
            intake.refusals(SOURCE, counter)
            slow = list(enumerate(objs))
            intake.other_shards += counter.skipped
            intake.settle(SOURCE, counter.ids, fast, slow, now, self.shard)
        return received

    async def stop(self) -> None:
        """Stop waiting, count what the socket already holds, close."""
        self._stopping = True
        if self._task is not None:
            await self._task
        if self._shadow is not None:
            while self._drain(BATCH):
                pass
        if self._sock is not None:
            self._sock.close(linger=0)
        self._ctx.term()
        log.info("zmq: stopped after %d message(s)", self.received)


def _rest_of_message(sock: zmq.Socket[bytes], first: bytes) -> tuple[bytes, bytes | None]:
    """(topic, payload) of a message whose first frame is not a whole event."""
    if not sock.getsockopt(zmq.RCVMORE):
        topic, sep, payload = first.partition(b" ")
        return (topic, payload) if sep else (b"", first)
    frames = [first, sock.recv()]
    while sock.getsockopt(zmq.RCVMORE):
        frames.append(sock.recv())
    if len(frames) != 2:
        return b"", None
    return frames[0], frames[1]


def unpack(payload: bytes) -> Any:
    """A msgpack payload (the Bootic bus's format in 2013-14), strings as text."""
    return msgpack.unpackb(payload, raw=False)


def _decode_one(
    topic: bytes,
    payload: bytes | None,
    seq_last: dict[Any, int],
    breaks: list[tuple[Any, int, int]],
) -> list[Any]:
    if payload is None:
        return [Rejected("bad_frames", "expected 1 or 2 frames: topic and JSON or msgpack")]
    if payload[:1] and is_msgpack(payload[0]):
        try:
            doc = unpack(payload)
        except Exception:  # msgpack raises several kinds, all of them bad input
            return [BAD_MSGPACK]
    else:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [BAD_JSON]
    docs = doc if type(doc) is list else [doc]
    for obj in docs:
        track_seq(obj, topic, seq_last, breaks)
    return docs
