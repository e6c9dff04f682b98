"""Live updates: a server-sent event after each flush, for the dashboard (SPEC §7).

Flushes closer together than `min_gap` are sent as one event, so a busy server
costs each open page at most one re-read a second; a comment every `heartbeat`
keeps proxies from closing a quiet stream. `web.send_stream` ends the stream
when the client goes or the server stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import orjson

from tallyd.aggregator import Aggregator
from tallyd.metrics import Metrics
from tallyd.web import HTTPError, Request, Response, Streamed

MAX_STREAMS = 1000
HEARTBEAT = 15.0
MIN_GAP = 1.0
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
    ) -> None:
        self.aggregator = aggregator
        self.limit = limit
        self.heartbeat = heartbeat
        self.min_gap = min_gap
        self.open = 0
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
            while True:
                # `flush` is every stream's: a wait, even cancelled, leaves it alone.
                done, _ = await asyncio.wait({flush}, timeout=self.heartbeat)
                if not done:
                    yield b": heartbeat\n\n"
                    continue
                data = orjson.dumps({"batch": flush.result(), "time": time.time()})
                # Taken before the gap, so a flush during it is sent right after.
                flush = self.aggregator.next_flush()
                yield b"event: flush\ndata: " + data + b"\n\n"
                await asyncio.sleep(self.min_gap)
        finally:
            self.open -= 1
