"""Slow clients: an honest client's badge views while thousands of connections trickle
their request heads (slowloris), and while tallyd is out of file descriptors.

    python bench/slow_clients.py [--quick]

The slow connections come from another process (`SlowClients`): each sends, as the
slowloris tool does, a request line with a target of its own and a Host header, then
one more byte of a header every 2 s; each one the server closes is replaced at once, so
`CROWD` stay open all along, as an attacker would keep them. tallyd runs with
`--header-timeout 5`, so during a measurement the server is also answering 408s and
accepting their replacements (~1,000 a second). The honest client views one badge
over a keep-alive connection, one request after another (`Honest`).

Each round measures the honest client alone, then with the crowd; the ratio of the
two p99s (`p99_vs_unloaded`, target ≤ 2) is taken per round, and the median and
spread of the rounds reported. Then tallyd with an open-files limit of 1,024 (soft
and hard) and `FD_CROWD` slow connections, more than it can hold: the keep-alive
client's requests served of those sent, and its p99; a request on a new connection
every tenth request too (one arriving while the server is out of descriptors).
Afterwards tallyd's count of the honest badge must be exactly its 200s.

`tests/test_slow_clients.py` uses the same driver and client.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tallyd, percentile, quick, report

# As the slowloris tool does: a request line with a target of its own, sent at once,
# then a head that never ends, one byte at a time.
REQUEST = b"GET /?%d HTTP/1.1\r\nHost: x\r\n"
TRICKLE = b"X-Slow: "  # then "a" after "a"
EVERY = 2.0  # seconds between one slow connection's bytes
TICK = 0.005  # the driver's clock: its connections are spread over the ticks of EVERY
CONNECTS_AT_ONCE = 128  # connects in flight (tallyd listens with a backlog of 2,048)
CROWD = 5000
FD_CROWD = 1100
FD_LIMIT = 1024
HEADER_TIMEOUT = 5.0
BADGE = "/badge/honest/readme.svg"


def raise_nofile() -> int:
    """This process's soft limit on open files raised to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the slow connections (in a process of their own) -------------------------------------


class _Slow(asyncio.Protocol):
    def __init__(self, crowd: _Crowd, serial: int) -> None:
        self.crowd = crowd
        self.serial = serial
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.first = 0.0  # when its head began (monotonic)
        self.answer = b""
        self.tick = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.first = time.monotonic()
        transport.write(REQUEST % self.serial)  # type: ignore[attr-defined]
        self.crowd.made(self)

    def data_received(self, data: bytes) -> None:
        if len(self.answer) < 4096:
            self.answer += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.crowd.lost(self, exc)

    def trickle(self) -> None:
        assert self.transport is not None
        self.transport.write(TRICKLE[self.sent : self.sent + 1] or b"a")
        self.sent += 1


class _Crowd:
    """`n` connections to `port`, each sending a byte of a head every EVERY seconds;
    with `hold`, each one that closes is replaced."""

    def __init__(self, port: int, n: int, hold: bool) -> None:
        self.port, self.n, self.hold = port, n, hold
        self.loop = asyncio.get_running_loop()
        self.ticks: list[set[_Slow]] = [set() for _ in range(round(EVERY / TICK))]
        self.next_tick = 0
        self.gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        self.open: set[_Slow] = set()
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.opened = 0
        self.failed: Counter[str] = Counter()  # connects that failed, by error
        self.answers: Counter[str] = Counter()  # closed by the server: the status, or "none"
        self.resets = 0
        self.ages: list[float] = []  # head begun to close, of those the server answered 408
        self.serial = 0

    def connect(self, delay: float = 0.0) -> None:
        task = self.loop.create_task(self._connect(delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with self.gate:
            if self.stopping:
                return
            self.serial += 1
            serial = self.serial
            try:
                await self.loop.create_connection(
                    lambda: _Slow(self, serial), "127.0.0.1", self.port
                )
            except OSError as exc:
                self.failed[type(exc).__name__] += 1
                if self.hold:
                    self.connect(0.1)

    def made(self, conn: _Slow) -> None:
        self.opened += 1
        self.open.add(conn)
        conn.tick = self.next_tick
        self.ticks[conn.tick].add(conn)
        self.next_tick = (self.next_tick + 1) % len(self.ticks)

    def lost(self, conn: _Slow, exc: Exception | None) -> None:
        self.open.discard(conn)
        self.ticks[conn.tick].discard(conn)
        if self.stopping:
            return
        status = conn.answer[9:12].decode() if conn.answer.startswith(b"HTTP/1.1 ") else "none"
        self.answers[status] += 1
        self.resets += exc is not None
        if status == "408":
            self.ages.append(time.monotonic() - conn.first)
        if self.hold:
            self.connect()

    async def run(self, pipe: Connection) -> None:
        stop = asyncio.Event()
        self.loop.add_reader(pipe.fileno(), stop.set)
        for _ in range(self.n):
            self.connect()
        ready = False
        tick = 0
        began = time.monotonic()
        while not stop.is_set():
            for conn in list(self.ticks[tick]):
                conn.trickle()
            tick = (tick + 1) % len(self.ticks)
            if not ready and (self.opened >= self.n or time.monotonic() - began > 30):
                ready = True
                pipe.send(("ready", len(self.open)))
            if ready and not self.hold and not self.open and not self.tasks:
                break  # every connection was closed by the server
            await asyncio.sleep(TICK)
        self.stopping = True
        pipe.send(("done", self.summary()))
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.sleep(0.1)

    def summary(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "open": len(self.open),
            "failed": dict(self.failed),
            "answers": dict(self.answers),
            "resets": self.resets,
            "ages": self.ages,
        }


async def _crowd(port: int, n: int, hold: bool, pipe: Connection) -> None:
    await _Crowd(port, n, hold).run(pipe)


def _drive(port: int, n: int, hold: bool, pipe: Connection) -> None:
    raise_nofile()
    asyncio.run(_crowd(port, n, hold, pipe))


class SlowClients:
    """`n` slow connections to `port` from a child process, trickling a head one byte
    every EVERY seconds; with `hold`, each one the server closes is replaced at once."""

    def __init__(self, port: int, n: int, hold: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_drive, args=(port, n, hold, child), daemon=True)
        self.proc.start()
        child.close()

    def ready(self, timeout: float = 60) -> int:
        """Wait until all are connected (or the driver gave up); how many are open."""
        if not self.pipe.poll(timeout):
            raise RuntimeError("the slow clients did not connect in time")
        kind, opened = self.pipe.recv()
        assert kind == "ready", kind
        return int(opened)

    def done(self) -> bool:
        """Whether the server has closed them all (without `hold`)."""
        return self.pipe.poll(0)

    def finish(self, wait: float = 0.0) -> dict[str, Any]:
        """Wait up to `wait` s for the server to close them all, then close what is
        left; returns `opened`, `open` (left to close), `failed` (connects), `answers`
        (status → connections the server closed), `resets` and `ages` (seconds from
        the head's first bytes to the 408's close)."""
        if not self.pipe.poll(wait):
            self.pipe.send("stop")
        if not self.pipe.poll(30):
            self.proc.kill()
            raise RuntimeError("the slow clients did not stop")
        kind, summary = self.pipe.recv()
        assert kind == "done", kind
        self.proc.join(10)
        self.pipe.close()
        return dict(summary)


# -- the honest client ---------------------------------------------------------------------


class Honest:
    """Badge views one after another over one keep-alive connection (http.client);
    with `fresh`, also every tenth on a new connection of its own."""

    def __init__(self, port: int, path: str = BADGE, fresh: bool = False) -> None:
        self.port, self.path, self.fresh = port, path, fresh
        self.latencies: list[float] = []
        self.sent = self.ok = 0
        self.fresh_sent = self.fresh_ok = 0
        self.errors: Counter[str] = Counter()
        self.conn = self._connection()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def _view(self, conn: http.client.HTTPConnection) -> bool:
        try:
            conn.request("GET", self.path)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.errors[type(exc).__name__] += 1
            conn.close()
            return False
        if resp.status != 200:
            self.errors[str(resp.status)] += 1
        return resp.status == 200

    def run(self, seconds: float, pause: float = 0.001) -> Honest:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            self.sent += 1
            if self._view(self.conn):
                self.ok += 1
                self.latencies.append(time.perf_counter() - began)
            if self.fresh and self.sent % 10 == 0:
                self.fresh_sent += 1
                conn = self._connection()
                self.fresh_ok += self._view(conn)
                conn.close()
            time.sleep(pause)
        return self

    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000 if self.latencies else float("nan")

    def close(self) -> None:
        self.conn.close()


def fd_log_lines(tallyd: Tallyd) -> int:
    return (Path(tallyd.dir) / "tallyd.log").read_text().count("out of file descriptors")


def counted(tallyd: Tallyd) -> int:
    return int(tallyd.get_json("/api/stats/track/honest%2Freadme/hit")["total"])


def main() -> None:
    short = quick()
    rounds, seconds = (3, 4.0) if short else (5, 10.0)
    raise_nofile()
    timeout = ("--header-timeout", f"{HEADER_TIMEOUT:g}")

    tallyd = Tallyd(*timeout)
    unloaded: list[float] = []
    loaded: list[float] = []
    ratios: list[float] = []
    longest: list[float] = []  # the honest client's slowest answer under the crowd, ms
    crowd: list[dict[str, Any]] = []
    try:
        warm = Honest(tallyd.port).run(0.5)  # the badge cached
        warm.close()
        sent, ok = warm.sent, warm.ok
        for _ in range(rounds):
            alone = Honest(tallyd.port).run(seconds)
            slow = SlowClients(tallyd.port, CROWD, hold=True)
            slow.ready()
            time.sleep(EVERY)  # every slow connection has begun its head
            during = Honest(tallyd.port).run(seconds)
            crowd.append(slow.finish())
            for h in (alone, during):
                h.close()
                sent, ok = sent + h.sent, ok + h.ok
            unloaded.append(alone.p99_ms())
            loaded.append(during.p99_ms())
            longest.append(max(during.latencies, default=0.0) * 1000)
            ratios.append(loaded[-1] / unloaded[-1])
            if during.ok != during.sent:
                print(f"honest client under the crowd: {during.errors}", file=sys.stderr)
            time.sleep(1.0)  # the server lets go of the closed connections
        time.sleep(0.5)  # the last flush
        views = counted(tallyd)
    finally:
        tallyd.stop()

    fd = Tallyd(*timeout)
    try:
        # Set once it runs: the same limit in force as a start under it (tallyd's own
        # raise to the hard limit is tested in test_http_protocol.py).
        resource.prlimit(fd.proc.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        began = time.monotonic()
        slow = SlowClients(fd.port, FD_CROWD, hold=True)
        fd_ready = slow.ready()
        starved = Honest(fd.port, fresh=True).run(seconds)
        fd_crowd = slow.finish()
        fd_took = time.monotonic() - began
        starved.close()
        time.sleep(1.0)
        fd_views = counted(fd)
        fd_lines = fd_log_lines(fd)
        fd_alive = fd.proc.poll() is None
    finally:
        fd.stop()

    answered = sum(c["answers"].get("408", 0) for c in crowd)
    ages = [a for c in crowd for a in c["ages"]]
    median_ratio = statistics.median(ratios)
    exact = views == ok and fd_views == starved.ok + starved.fresh_ok
    rows = [
        ("honest badge p99 alone, per round", ", ".join(f"{x:.2f}" for x in unloaded) + " ms"),
        (
            f"honest badge p99 under {CROWD:,} slow, per round",
            ", ".join(f"{x:.2f}" for x in loaded) + " ms",
        ),
        (
            "p99_vs_unloaded, median (spread)",
            f"{median_ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) (target ≤ 2)",
        ),
        (
            "honest badge slowest under the crowd, per round",
            ", ".join(f"{x:.0f}" for x in longest) + " ms",
        ),
        ("honest requests answered 200", f"{ok:,} of {sent:,}"),
        (
            "slow connections closed with a 408",
            f"{answered:,}, head begun to closed {min(ages, default=0):.2f}-"
            f"{max(ages, default=0):.2f} s (--header-timeout {HEADER_TIMEOUT:g})",
        ),
        ("slow connections opened", ", ".join(f"{c['opened']:,}" for c in crowd)),
        ("badge views counted", f"{views:,} (honest 200s: {ok:,})"),
        (
            f"fds {FD_LIMIT}, {FD_CROWD:,} slow: keep-alive served",
            f"{starved.ok:,} of {starved.sent:,}, p99 {starved.p99_ms():.2f} ms",
        ),
        (
            f"fds {FD_LIMIT}: new connections served",
            f"{starved.fresh_ok} of {starved.fresh_sent}",
        ),
        (
            f"fds {FD_LIMIT}: slow connections",
            f"{fd_ready:,} open at first; closed by the server {fd_crowd['answers']}",
        ),
        (f"fds {FD_LIMIT}: 'out of file descriptors' lines", f"{fd_lines} in {fd_took:.1f} s"),
        (
            f"fds {FD_LIMIT}: views counted",
            f"{fd_views:,} (200s: {starved.ok + starved.fresh_ok:,})",
        ),
    ]
    figures = {
        "p99_ms_unloaded": [round(x, 3) for x in unloaded],
        "p99_ms_loaded": [round(x, 3) for x in loaded],
        "max_ms_loaded": [round(x, 1) for x in longest],
        "honest_sent": sent,
        "honest_ok": ok,
        "slow_408": answered,
        "slow_close_age_s": [round(min(ages, default=0), 2), round(max(ages, default=0), 2)],
        "views_counted": views,
        "fd_sent": starved.sent,
        "fd_ok": starved.ok,
        "fd_p99_ms": round(starved.p99_ms(), 3),
        "fd_fresh_sent": starved.fresh_sent,
        "fd_fresh_ok": starved.fresh_ok,
        "fd_log_lines": fd_lines,
        "fd_crowd_seconds": round(fd_took, 1),
        "fd_tallyd_alive": fd_alive,
        "fd_views_counted": fd_views,
    }
    ratio_figures = {
        "p99_vs_unloaded": round(median_ratio, 2),
        "p99_vs_unloaded_spread": [round(min(ratios), 2), round(max(ratios), 2)],
        "served": round(ok / sent, 4) if sent else 0.0,
        "fd_served": round(starved.ok / starved.sent, 4) if starved.sent else 0.0,
        "exact": 1.0 if exact else 0.0,
    }
    report("slow_clients", rows, figures, ratio_figures)


if __name__ == "__main__":
    main()
