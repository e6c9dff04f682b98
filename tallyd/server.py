"""`tallyd serve`: every part in one process, started and stopped in order.

Start: store → journal → flush loop → HTTP → bus → syslog, each a context
manager. Stop (SIGTERM or SIGINT), in the reverse order: intake stops, HTTP stops
taking requests and finishes those under way → the aggregator's last flush → the
journal and the store close. A part that fails to start unwinds those before it
the same way. A second signal forces the exit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import zmq

from tallyd.aggregator import Aggregator
from tallyd.app import App
from tallyd.badges.counts import BadgeCounts
from tallyd.badges.visitors import Visitors
from tallyd.config import Config
from tallyd.dedup import Dedup
from tallyd.expand import Expander
from tallyd.httpd import HTTPServer, Limits
from tallyd.ingest.syslog import SyslogSource
from tallyd.ingest.zmq import ZmqSource
from tallyd.intake import Intake
from tallyd.keys import KeySpace
from tallyd.limits import ClientRate
from tallyd.metrics import Metrics
from tallyd.owner import Gate, Owner
from tallyd.periods import Clock
from tallyd.recovery import open_journal, save_ids
from tallyd.retention import Retention
from tallyd.runtime import StopSignals, pass_gil_often, return_freed_memory, settle_collector
from tallyd.seedapi import router_for
from tallyd.shard import Shard, for_worker
from tallyd.stats import Stats
from tallyd.stores import Store, StoreError, kind, open_store, open_when_ready, redact
from tallyd.web import Cors

log = logging.getLogger("tallyd")


@dataclass(frozen=True)
class Worker:
    """One of `count` worker processes (`--workers`, see `tallyd.workers`).

    `leftovers`: journal directories no worker owns any more (an earlier run's
    with fewer or more workers), which this one replays at start.
    """

    index: int
    count: int
    leftovers: tuple[str, ...] = ()


@dataclass
class Parts:
    """The assembled service, before anything runs."""

    config: Config
    store: Store
    metrics: Metrics
    aggregator: Aggregator
    intake: Intake
    stats: Stats
    app: App
    worker: Worker | None = None

    @property
    def shard(self) -> Shard | None:
        """The share of the bus this process counts."""
        w = self.worker
        return (
            Shard.parse(self.config.shard)
            if w is None
            else for_worker(self.config.shard, w.index, w.count)
        )


def assemble(cfg: Config, worker: Worker | None = None) -> Parts:
    store = open_store(cfg.store, cfg.key_prefix)
    metrics = Metrics()
    clock = Clock(cfg.timezone)
    keys = KeySpace(cfg.key_prefix)
    # One retention for writes (the expander) and reads (stats): they must agree.
    retention = Retention(cfg.retention_minutes, cfg.retention_hours)
    expander = Expander(keys, clock, retention)
    aggregator = Aggregator(
        store,
        expander,
        metrics,
        flush_interval=cfg.flush_interval,
        max_batch_cells=cfg.max_batch_cells,
        max_pending_cells=cfg.max_pending_cells,
        dedup=Dedup(cfg.dedup_window, cfg.dedup_max_ids),
        wait_timeout=cfg.wait_timeout,
    )
    intake = Intake(aggregator, metrics, cfg.breakdowns, cfg.max_new_ids_per_minute)
    stats = Stats(store, keys, clock, aggregator, retention=retention)
    badges = BadgeCounts(
        stats,
        aggregator,
        metrics,
        Visitors(cfg.unique_secret),
        cfg.badge_refresh,
        new_names=intake.new_names,
        rate=ClientRate(cfg.badge_rate),
    )
    cors = Cors(cfg.cors_origin, cfg.cors_ingest)
    # /healthz names the kind of store only: its address is nobody's business outside.
    app = App(
        stats,
        aggregator,
        intake,
        metrics,
        badges,
        cfg.max_body,
        kind(cfg.store),
        cors,
        router=router_for(cfg.seed_api),
    )
    app.owner = Owner(Gate(cfg.admin_token), stats, aggregator, badges)
    if worker is not None:
        app.worker = worker.index
        metrics.gauge(
            "tallyd_worker", "Which worker process answered (--workers).", lambda: worker.index
        )
    return Parts(cfg, store, metrics, aggregator, intake, stats, app, worker)


def _plainly(exc: BaseException) -> str:
    """An error in words, without Python's `[Errno 17]` decoration."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def store_identity(cfg: Config) -> str:
    """The store counts go to, as a journal records it: an SQLite file by its real
    path, any other store by its URL (without a password) and key prefix."""
    if cfg.store.startswith("sqlite:"):
        from tallyd.stores.sqlite import path_of

        return "sqlite:" + os.path.realpath(path_of(cfg.store))
    parts = urlsplit(cfg.store)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return f"{bare} prefix={cfg.key_prefix!r}"  # a password may change; the store does not


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind the HTTP socket up front, so a busy port is a clear error, not a crash.

    It listens only once the store is open: until then a client is refused at
    once (a health probe sees the service down) instead of waiting in the backlog.
    With `reuse_port`, worker processes each bind the port (SO_REUSEPORT) and the
    kernel spreads new connections across them.
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class StartFailed(Exception):
    """A part could not start; its one log line is written already."""


@dataclass
class Outcome:
    """What the stop found: cells the last flush could not write."""

    lost: int = 0


@contextlib.asynccontextmanager
async def store_opened(parts: Parts, stop: asyncio.Event) -> AsyncIterator[bool]:
    """The store, open (waiting up to --store-wait for it); yields False if a stop
    came first. Closed last of all."""
    cfg = parts.config
    opening = asyncio.create_task(
        open_when_ready(parts.store, cfg.store_wait, redact(cfg.store)), name="open store"
    )
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait((opening, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not opening.done():
        # A stop while the store is not ready yet: nothing was taken in, nothing to flush.
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreError):
            await opening
        yield False
        return
    try:
        opening.result()
    except StoreError as exc:
        log.error("%s", exc)
        raise StartFailed from exc
    log.info("store %s open; counting in %s", redact(cfg.store), cfg.timezone)
    try:
        yield True
    finally:
        await parts.store.close()


@contextlib.asynccontextmanager
async def journaled(parts: Parts, outcome: Outcome) -> AsyncIterator[None]:
    """An earlier run's journal replayed, and with --durable this run's opened; at
    the end, closed (kept if cells were not written), or the ids saved."""
    cfg = parts.config
    directory = Path(cfg.journal_path)
    try:
        for old in parts.worker.leftovers if parts.worker else ():
            await open_journal(
                Path(old), parts.aggregator, False, store_identity(cfg), cfg.store_wait
            )
        durable = await open_journal(
            directory, parts.aggregator, cfg.durable, store_identity(cfg), cfg.store_wait
        )
    except (OSError, StoreError) as exc:
        log.error("journal %s: %s", directory, _plainly(exc))
        raise StartFailed from exc
    if durable is not None:
        log.info("durable: journaling to %s", directory)
    try:
        yield
    finally:
        if durable is not None:
            journal, lock = durable
            # Whatever did not reach the store stays journaled for the next start.
            await asyncio.to_thread(journal.close, not outcome.lost)
            lock.release()
            if outcome.lost:
                log.info("durable: the journal keeps them; the next start writes them")
        elif len(parts.aggregator.dedup):
            try:
                await asyncio.to_thread(save_ids, directory, parts.aggregator)
            except OSError as exc:
                log.error("cannot save the event ids remembered to %s: %s", directory, exc)


@contextlib.asynccontextmanager
async def flushing(parts: Parts, outcome: Outcome) -> AsyncIterator[None]:
    """The aggregator's flush loop; at the end, the last flush (retried for up to
    --shutdown-timeout), what it could not write kept in `outcome`."""
    flusher = asyncio.create_task(parts.aggregator.run(), name="flush")
    try:
        yield
    finally:
        parts.aggregator.stop()
        await flusher
        outcome.lost = await parts.aggregator.drain(parts.config.shutdown_timeout)


@contextlib.asynccontextmanager
async def http_serving(parts: Parts, sock: socket.socket) -> AsyncIterator[None]:
    """The HTTP server on the bound socket; at the end, requests under way (uploads
    too) finish for up to --shutdown-timeout, then the rest are cancelled."""
    cfg = parts.config
    limits = Limits(
        cfg.header_timeout, cfg.keepalive_timeout, cfg.max_connections, cfg.max_body_buffered
    )
    http = HTTPServer(parts.app, limits, parts.metrics.http_latency)
    sock.listen(2048)
    await http.start(sock)
    log.info("listening on http://%s", cfg.http)
    try:
        yield
    finally:
        await http.stop(cfg.shutdown_timeout)


@contextlib.asynccontextmanager
async def bus_reading(parts: Parts) -> AsyncIterator[None]:
    """The ZeroMQ subscriber, if configured; stopped before HTTP."""
    cfg = parts.config
    if not (cfg.zmq or cfg.zmq_bind):
        yield
        return
    source = ZmqSource(parts.intake, cfg.zmq, cfg.zmq_bind, cfg.zmq_topic, cfg.zmq_hwm, parts.shard)
    try:
        source.start()
    except zmq.ZMQError as exc:
        log.error("cannot open the ZeroMQ socket: %s", exc)
        raise StartFailed from exc
    try:
        yield
    finally:
        await source.stop()


@contextlib.asynccontextmanager
async def syslog_reading(parts: Parts) -> AsyncIterator[None]:
    """The syslog listener, if configured; stopped first."""
    cfg = parts.config
    if not cfg.syslog:
        yield
        return
    source = SyslogSource(
        parts.intake, cfg.syslog, cfg.syslog_event, reuse_port=parts.worker is not None
    )
    try:
        await source.start()
    except (OSError, ValueError) as exc:
        log.error("cannot open the syslog socket: %s", getattr(exc, "strerror", None) or exc)
        raise StartFailed from exc
    try:
        yield
    finally:
        await source.stop()


async def serve(cfg: Config, worker: Worker | None = None) -> int:
    """Run until a signal; returns the process exit code.

    Each part is a context manager entered in order — store, journal, flush loop,
    HTTP, bus, syslog — and left in the reverse order, whatever failed: intake stops
    first, then HTTP finishes what is under way, the last flush runs, the journal
    closes, the store closes.
    """
    return_freed_memory()
    pass_gil_often()
    parts = assemble(cfg, worker)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = StopSignals()

    def on_signal(sig: signal.Signals) -> None:
        pressed = signals.press()
        if pressed == 1:
            log.info("%s: stopping (again to force)", sig.name)
            stop.set()
        elif pressed == 2:
            log.warning("%s again: exiting now, unflushed counts are lost", sig.name)
            os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    outcome = Outcome()
    try:
        try:
            sock = bind(cfg.http_host, cfg.http_port, reuse_port=worker is not None)
        except OSError as exc:
            log.error("cannot listen on %s: %s", cfg.http, exc.strerror or exc)
            return 1
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(sock.close)
            if not await stack.enter_async_context(store_opened(parts, stop)):
                log.info("stopped before the store was ready")
                return 0
            await stack.enter_async_context(journaled(parts, outcome))
            await stack.enter_async_context(flushing(parts, outcome))
            await stack.enter_async_context(http_serving(parts, sock))
            await stack.enter_async_context(bus_reading(parts))
            await stack.enter_async_context(syslog_reading(parts))
            settle_collector()  # everything built: out of the collector's passes
            await stop.wait()
    except StartFailed:
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    accepted = ", ".join(f"{k}={v}" for k, v in sorted(parts.metrics.accepted.items()))
    lost = outcome.lost
    outcome_text = "every count written" if not lost else f"{lost} cells NOT written"
    log.info("stopped: %s (accepted: %s)", outcome_text, accepted or "none")
    return 2 if lost else 0
