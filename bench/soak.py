"""Soak: kill -9 `tallyd serve --durable` again and again under HTTP and ZeroMQ load.

    python bench/soak.py [--quick] [--store sqlite|redis] [--kills N]

HTTP clients post realistic events with ids (four threads, 100 a body) and keep
what got a 202; a publisher sends bus events with ids in bursts of 1,000 and
waits to see each burst counted. Every 1-3 s (at random) tallyd is killed with
SIGKILL and started again on the same store and journal. After the last kill:

- every count a reader saw before a kill is still there after the restart;
- at most the bodies waiting for their answer at a kill are counted besides what
  was acknowledged (on disk, not yet answered);
- the clients send again what had no answer or confirmation, and the counts are
  then exactly what was sent: the journal lost nothing, ids counted nothing twice.

Figures: events acknowledged, kills, replays, and the time each restart took.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import binary, free_port, report

BURST = 1000


def http_events(first: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "order",
            "id": f"h-{i}",
            "time": f"2013-09-05T14:{i % 60:02d}:07.{i % 1000:03d}+02:00",
            "data": {
                "account": f"shop{i % 997}",
                "status": ("paid", "pending", "shipped")[i % 3],
                "total": round(i * 1.37, 2),
                "items": [{"sku": f"s\u00e9-{i % 50}", "qty": 1 + i % 3}],
            },
        }
        for i in range(first, first + n)
    ]


def bus_event(i: int) -> bytes:
    return b"events " + orjson.dumps(
        {
            "type": "pageview",
            "id": f"z-{i}",
            "time": f"2013-09-05T14:{i % 60:02d}:07Z",
            "data": {"account": f"shop{i % 997}", "path": "/p/\u00e9t\u00e9", "ua": 'Mo "z"'},
        }
    )


class Service:
    def __init__(self, store: str, journal: Path, zmq_port: int, log: Path) -> None:
        self.store, self.journal, self.zmq_port, self.log = store, journal, zmq_port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> float:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "tallyd",
            "serve",
            "--store",
            self.store,
            "--http",
            f"127.0.0.1:{port}",
            "--durable",
            "--journal-dir",
            str(self.journal),
            "--zmq",
            f"tcp://127.0.0.1:{self.zmq_port}",
        ]
        t0 = time.perf_counter()
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        while time.perf_counter() - t0 < 60:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"tallyd did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def total(self, event: str) -> int:
        got: int = httpx.get(f"{self.url}/api/stats/track/all/{event}", timeout=10).json()["total"]
        return got


class Posters:
    """HTTP clients until the server goes away; `unanswered` keeps bodies without an answer."""

    def __init__(self, url: str, start: int, threads: int = 4, batch: int = 100) -> None:
        self.url, self.next, self.batch = url, start, batch
        self.acked = 0
        self.unanswered: list[list[dict[str, Any]]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def join(self) -> None:
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while True:
                with self._lock:
                    first, self.next = self.next, self.next + self.batch
                events = http_events(first, self.batch)
                try:
                    r = c.post("/api/events", json=events)
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered.append(events)
                    return
                if r.status_code != 202:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                with self._lock:
                    self.acked += len(events)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 kills instead of 20")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    ap.add_argument("--kills", type=int, default=0)
    args = ap.parse_args()
    kills = args.kills or (5 if args.quick else 20)
    rnd = random.Random(12)
    work = Path(tempfile.mkdtemp(prefix="tallyd-soak-"))
    redis_proc = None
    if args.store == "redis":
        port = free_port()
        redis_proc = subprocess.Popen(
            [binary("redis-server"), "--port", str(port), "--save", "", "--dir", str(work)],
            stdout=subprocess.DEVNULL,
        )
        store = f"redis://127.0.0.1:{port}/0"
    else:
        store = f"sqlite:///{work}/soak.db"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    zmq_port = free_port()
    pub.bind(f"tcp://127.0.0.1:{zmq_port}")
    service = Service(store, work / "journal", zmq_port, work / "tallyd.log")
    acked = posted = sent = confirmed = seen_http = 0
    unanswered: list[list[dict[str, Any]]] = []
    starts: list[float] = []
    problems: list[str] = []

    def subscribed() -> None:
        if not pub.poll(30_000):
            raise RuntimeError("tallyd never subscribed")
        while pub.poll(0):
            pub.recv()

    def resend_bus() -> None:
        nonlocal confirmed
        for i in range(confirmed, sent):
            pub.send(bus_event(i))
        deadline = time.monotonic() + 30
        while service.total("pageview") < sent and time.monotonic() < deadline:
            time.sleep(0.02)
        confirmed = sent

    try:
        for k in range(kills + 1):
            starts.append(service.start())
            subscribed()
            if service.total("pageview") < confirmed:
                problems.append(f"restart {k}: bus count fell below what a reader saw")
            if service.total("order") < seen_http:
                problems.append(f"restart {k}: HTTP count fell below what a reader saw")
            resend_bus()
            if k == kills:
                break
            posters = Posters(service.url, posted)
            deadline = time.monotonic() + rnd.uniform(1.0, 3.0)
            while time.monotonic() < deadline:
                for i in range(sent, sent + BURST):
                    pub.send(bus_event(i))
                sent += BURST
                t0 = time.monotonic()
                while service.total("pageview") < sent and time.monotonic() - t0 < 10:
                    time.sleep(0.01)
                confirmed = sent if service.total("pageview") >= sent else confirmed
            for i in range(sent, sent + BURST):  # in flight at the kill
                pub.send(bus_event(i))
            sent += BURST
            seen_http = service.total("order")
            service.kill()
            posters.join()
            problems += posters.errors
            acked += posters.acked
            unanswered += posters.unanswered
            posted = posters.next
        in_flight = sum(len(b) for b in unanswered)
        counted = service.total("order")
        if not acked <= counted <= acked + in_flight:
            problems.append(f"HTTP: {counted} counted for {acked} acknowledged (+{in_flight})")
        with httpx.Client(base_url=service.url, timeout=30) as c:
            for events in unanswered:
                c.post("/api/events", json=events)
        time.sleep(1.0)
        if service.total("order") != acked + in_flight:
            problems.append(
                f"HTTP after re-sending: {service.total('order')} != {acked + in_flight}"
            )
        if service.total("pageview") != sent:
            problems.append(f"bus: {service.total('pageview')} counted for {sent} sent")
        if service.proc is not None:
            service.proc.send_signal(signal.SIGTERM)
            service.proc.wait(60)
        log = service.log.read_text()
        replays = log.count("batch(es) replayed")
        if "Traceback" in log:
            problems.append("a traceback in the log")
    finally:
        if service.proc and service.proc.poll() is None:
            service.proc.kill()
        if redis_proc:
            redis_proc.terminate()
            redis_proc.wait()
        pub.close(0)
        ctx.term()
    rows = [
        ("store", args.store),
        ("kills (SIGKILL under load)", f"{kills}"),
        ("HTTP events acknowledged", f"{acked:,} (+{in_flight:,} sent again without an answer)"),
        ("bus events sent and counted", f"{sent:,}"),
        ("restarts that replayed a journal", f"{replays}"),
        (
            "start-up, median / max",
            f"{sorted(starts)[len(starts) // 2]:.2f} s / {max(starts):.2f} s",
        ),
        ("problems", "; ".join(problems) or "none"),
    ]
    figures = {
        "kills": kills,
        "http_acked": acked,
        "bus_sent": sent,
        "replays": replays,
        "problems": problems,
    }
    report("soak", rows, figures, {"exact": 1.0 if not problems else 0.0})
    shutil.rmtree(work, ignore_errors=True)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
