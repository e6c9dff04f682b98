"""Live updates: a server-sent event after each flush, for the dashboard (SPEC §7).

Flushes closer together than `min_gap` are sent as one event, so a busy server
costs each open page at most one re-read a second; a comment every `heartbeat`
keeps proxies from closing a quiet stream. `web.send_stream` ends the stream
when the client goes or the server stops.

Other processes writing to the same store (`--workers`, other nodes) resolve no
flush of this one: while streams are open, the store's grand total (every event's
`all` rollup, all time) is read every `poll` seconds, once for all of them, and a
change the streams' own flushes did not explain is sent as a flush too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import orjson

from tallyd.aggregator import Aggregator
from tallyd.keys import ROLLUP
from tallyd.metrics import Metrics
from tallyd.stores.base import StoreError
from tallyd.web import HTTPError, Request, Response, Streamed

MAX_STREAMS = 1000
HEARTBEAT = 15.0
MIN_GAP = 1.0
# Seconds between two reads of the store's total, for the writes of other processes.
POLL = 2.0
# The events whose totals are added up, as /api/stats/track lists them.
MAX_EVENTS = 1000
# How long a browser waits before it reconnects a stream that ended.
RETRY_MS = 3000
EVENT_STREAM = b"text/event-stream; charset=utf-8"
# nginx buffers a proxied answer unless told not to, and would hold the events back.
HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class Live:
    """The `/api/live` streams, at most `limit` open at once."""

    def __init__(
        self,
        aggregator: Aggregator,
        metrics: Metrics,
        limit: int = MAX_STREAMS,
        heartbeat: float = HEARTBEAT,
        min_gap: float = MIN_GAP,
        poll: float = POLL,
    ) -> None:
        self.aggregator = aggregator
        self.limit = limit
        self.heartbeat = heartbeat
        self.min_gap = min_gap
        self.poll = poll
        self.open = 0
        # The store's total as last read, when, and one read at a time for every stream.
        self._total: int | None = None
        self._read_at = -float("inf")
        self._reading = asyncio.Lock()
        metrics.gauge("tallyd_live_streams", "Open /api/live streams.", lambda: self.open)

    def answer(self, req: Request) -> Response | Streamed:
        if req.method == "HEAD":
            return Response(200, b"", EVENT_STREAM, HEADERS)
        if self.open >= self.limit:
            raise HTTPError(
                503,
                "too_many_streams",
                f"{self.limit} live streams are open; try again later",
                [(b"retry-after", b"5")],
            )
        self.open += 1  # given back when the events end (`_events`)
        return Streamed(self._events(), EVENT_STREAM, list(HEADERS))

    async def _events(self) -> AsyncGenerator[bytes, None]:
        try:
            # Something at once: the head goes out with the first piece.
            yield b"retry: %d\n: live\n\n" % RETRY_MS
            flush = self.aggregator.next_flush()
            seen = await self.total(time.monotonic())
            quiet = 0.0
            while True:
                # `flush` is every stream's: a wait, even cancelled, leaves it alone.
                wait = min(self.poll, self.heartbeat - quiet)
                done, _ = await asyncio.wait({flush}, timeout=wait)
                batch: int | None = None
                if done:
                    batch = flush.result()
                    # Taken before the gap, so a flush during it is sent right after.
                    flush = self.aggregator.next_flush()
                    # What the page reads now: written after it is news.
                    seen = await self.total(time.monotonic())
                else:
                    now = await self.total(time.monotonic() - self.poll / 2)
                    if now == seen:
                        quiet += wait
                        if quiet >= self.heartbeat:
                            quiet = 0.0
                            yield b": heartbeat\n\n"
                        continue
                    seen = now  # another process wrote: `batch` is null
                quiet = 0.0
                data = orjson.dumps({"batch": batch, "time": time.time()})
                yield b"event: flush\ndata: " + data + b"\n\n"
                await asyncio.sleep(self.min_gap)
        finally:
            self.open -= 1

    async def total(self, since: float) -> int | None:
        """The store's grand total as read at `since` (monotonic) or later, one read
        for every stream waiting; None while the store does not answer."""
        async with self._reading:
            if self._read_at >= since:
                return self._total
            started = time.monotonic()
            agg = self.aggregator
            keys = agg.expander.keys
            try:
                events = await agg.store.members(keys.events, "", "", MAX_EVENTS)
                rollups = [keys.counter(ROLLUP, e) for e in events]
                hashes = (await agg.store.read(rollups, "")).hashes
                self._total = sum(n for h in hashes for n in h.values())
            except StoreError:
                self._total = None
            self._read_at = started  # not before: a read cut short left no answer
            return self._total
