"""`tallyd serve --workers N`: a supervisor and N worker processes (docs/scaling.md).

Each worker is `serve` in a forked process of its own: its own event loop,
aggregator and batch node id (a fresh random one per process, so no two
workers, nor two lives of one worker, ever share one), and its own journal
directory `<journal>/worker-<i>`, which a restarted worker replays first. The
workers each bind the HTTP port and the syslog UDP ports with SO_REUSEPORT; the
kernel spreads connections and senders across them. On the bus each takes the
accounts of its share (`tallyd.shard`), so every event is counted once.

The supervisor holds the HTTP port (bound, never listening) so that it stays
tallyd's while a worker restarts, restarts a worker that dies (with back-off,
one log line each), and on SIGTERM or SIGINT stops the workers in order: a
SIGTERM to each, then it waits for their last flushes. A second signal kills
them at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tallyd.config import Config
from tallyd.ingest.syslog import claim_udp_ports
from tallyd.runtime import StopSignals
from tallyd.server import Worker, bind

log = logging.getLogger("tallyd.workers")

# Seconds before a dead worker's first restart, the longest wait, and how long a
# worker must have run for its next failure to start the back-off over.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STEADY = 30.0
TICK = 0.05
PR_SET_PDEATHSIG = 1


def worker_dir(journal: str, index: int) -> str:
    return os.path.join(journal, f"worker-{index}")


def leftovers(journal: str, count: int) -> tuple[str, ...]:
    """Journal directories no worker of `count` owns: the plain one (a run without
    --workers) and those of workers numbered `count` and up."""
    root = Path(journal)
    if not root.is_dir():
        return ()
    old = [p for p in root.glob("worker-*") if p.is_dir()]
    extra = [p for p in old if not p.name[7:].isdigit() or int(p.name[7:]) >= count]
    return (str(root), *sorted(map(str, extra)))


class Supervisor:
    def __init__(self, cfg: Config, run: Callable[[Config, Worker], int]) -> None:
        self.cfg = cfg
        self.count = cfg.worker_count
        self.run = run
        self.pids: dict[int, int] = {}  # pid → worker index
        self.started: dict[int, float] = {}  # index → when
        self.backoff: dict[int, float] = {}
        self.restart_at: dict[int, float] = {}
        self.codes: dict[int, int] = {}
        self.stops = StopSignals()

    def main(self) -> int:
        cfg = self.cfg
        try:
            # Another tallyd's workers share their port with SO_REUSEPORT, and the
            # kernel would let these join them (each answering part of the clients,
            # from its own store): a plain listening socket says the port is taken.
            probe = bind(cfg.http_host, cfg.http_port)
            probe.listen()
            port = probe.getsockname()[1]
            probe.close()
            # Holding the port (bound, not listening) keeps it tallyd's between
            # workers, and turns port 0 into the one port every worker binds.
            hold = bind(cfg.http_host, port, reuse_port=True)
        except OSError as exc:
            log.error("cannot listen on %s: %s", cfg.http, exc.strerror or exc)
            return 1
        try:
            syslog = claim_udp_ports(cfg.syslog)
        except OSError as exc:
            hold.close()
            log.error("cannot listen for syslog on %s", exc.strerror)
            return 1
        http = f"{cfg.http.rpartition(':')[0]}:{port}"
        self.cfg = dataclasses.replace(cfg, http=http, syslog=syslog)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        log.info("supervisor: starting %d workers on port %d", self.count, port)
        try:
            for i in range(self.count):
                if self.stops.asked:
                    break  # a stop while starting: the started ones are stopped below
                self._start(i)
            while not self.stops.asked:
                self._reap()
                self._restart_due()
                time.sleep(TICK)
            self._stop()
        finally:
            hold.close()
        failed = {i: c for i, c in sorted(self.codes.items()) if c}
        if failed:
            how = ", ".join(f"worker {i} {_ended(c)}" for i, c in failed.items())
            log.error("supervisor: stopped; %s", how)
            # A worker killed by a signal (and not restarted before the stop) may have
            # lost what it had not written: 2, as for cells not written.
            return max(2 if c < 0 else c for c in failed.values())
        log.info("supervisor: stopped; every worker exited cleanly")
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        pressed = self.stops.press()
        if not pressed:
            return
        name = signal.Signals(signum).name
        if pressed == 1:
            log.info("supervisor: %s: stopping %d workers (again to force)", name, len(self.pids))
            for pid in list(self.pids):
                _kill(pid, signal.SIGTERM)
        else:
            log.warning(
                "supervisor: %s again: killing the workers, unflushed counts are lost", name
            )
            for pid in list(self.pids):
                _kill(pid, signal.SIGKILL)
            os._exit(1)

    def _start(self, index: int) -> None:
        cfg = dataclasses.replace(
            self.cfg, workers="1", journal_dir=worker_dir(self.cfg.journal_path, index)
        )
        worker = Worker(
            index, self.count, leftovers(self.cfg.journal_path, self.count) if index == 0 else ()
        )
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(cfg, worker, self.run, parent)
            finally:
                os._exit(code)
        self.pids[pid] = index
        self.started[index] = time.monotonic()
        log.info("supervisor: worker %d started (pid %d)", index, pid)

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            self.codes[index] = code
            if self.stops.asked:
                continue
            lived = time.monotonic() - self.started[index]
            wait = (
                self.backoff.get(index, FIRST_BACKOFF / 2) * 2 if lived < STEADY else FIRST_BACKOFF
            )
            wait = min(wait, MAX_BACKOFF)
            self.backoff[index] = wait
            self.restart_at[index] = time.monotonic() + wait
            log.warning(
                "supervisor: worker %d (pid %d) %s after %.1fs; restarting in %.1fs",
                index,
                pid,
                _ended(code),
                lived,
                wait,
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, at in list(self.restart_at.items()):
            if at <= now:
                del self.restart_at[index]
                self._start(index)

    def _stop(self) -> None:
        """Wait for every worker's last flush (each has its own --shutdown-timeout)."""
        while self.pids:
            self._reap()
            time.sleep(TICK)


def _child(cfg: Config, worker: Worker, run: Callable[[Config, Worker], int], parent: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    # A terminal's Ctrl-C goes to the supervisor only, which stops the workers in
    # order; and a supervisor killed outright takes its workers with it.
    os.setpgid(0, 0)
    _die_with_parent()
    if os.getppid() != parent:
        return 0  # the supervisor was gone before the request above took effect
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s[{worker.index}]: %(message)s")
        )
    try:
        return run(cfg, worker)
    except BaseException:
        logging.getLogger("tallyd").exception("worker %d failed", worker.index)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _die_with_parent() -> None:
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _ended(code: int) -> str:
    """How a worker ended, from its exit code (negative: the signal that killed it)."""
    return f"exited with signal {-code}" if code < 0 else f"exited with code {code}"
