"""ZeroMQ ingest: events/s from a PUB socket until every event is in the store.

    python bench/ingest_zmq.py [--quick] [--shape both|realistic|minimal]

Two streams, each measured against its own ceiling (default: both, realistic first):

- realistic (`bench/corpus.py`): what the Bootic bus carried, one `<type> <Go JSON>`
  frame per event: eight event types, 1,000 accounts (Zipf-like), times in Go's
  RFC 3339 with nanoseconds, Ruby's form and Unix seconds, nested `browser`
  objects, `\\u0026` escapes, non-ASCII titles, every number a float, 300-900
  bytes, no `seq`;
- minimal: tallyd's own shape, `pageview {"type":"pageview","data":{"account":
  ...},"time":<int>,"seq":N}` (1,000 accounts, ten minutes of event times).

For each, one publisher (this process) sends the same pre-built frames to:

- the ceiling: a bare pyzmq SUB loop in its own process that receives and
  orjson-decodes every frame, and nothing else;
- for scale, the same loop receiving without decoding: no JSON ingest in
  Python gets past it;
- tallyd (`tallyd serve --zmq ...`) on SQLite, then on Redis (a redis-server
  started here), timed until the store holds every event (read directly, not
  through tallyd), then checked exactly against what was sent: every (account,
  type) and (account, type, day) total and the `all` rollup (`corpus.expected_counts`);
- on the first stream, the first seed's design: a SUB loop that does one Redis
  HINCRBY round trip per increment (year, month, day, hour, for the account and
  for `all`); timed on a slice of the stream, it is that slow.

Each run waits for the subscriber's subscription (XPUB) before sending. The
realistic stream's ratios have the SPEC's names (`vs_ceiling_sqlite`,
`vs_ceiling_redis`, `vs_seed`); the minimal stream's start with `minimal_`.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import orjson
import redis
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from common import (
    StoreCounts,
    Tallyd,
    arguments,
    check_counts,
    free_port,
    report,
    until_counted,
)


@dataclass
class Stream:
    """Pre-built frames and what a store must hold once it has counted them."""

    shape: str  # "realistic" or "minimal"
    frames: list[bytes]
    counts: corpus.Counts

    @property
    def prefix(self) -> str:
        """Of its ratios' names: the realistic stream's are the SPEC's."""
        return "" if self.shape == "realistic" else f"{self.shape}_"

    @property
    def types(self) -> list[str]:
        return sorted(self.counts.by_type())


def stream(shape: str, n: int) -> Stream:
    counts = corpus.Counts.empty()
    if shape == "realistic":
        frames = []
        for ev in corpus.iter_events(n):
            frames.append(corpus.json_frame(ev))
            counts.add(ev)
    else:
        evs = corpus.minimal_events(n)
        frames = [b"pageview " + orjson.dumps(ev) for ev in evs]
        for ev in evs:
            counts.add(ev)
    return Stream(shape, frames, counts)


def publisher(port: int) -> zmq.Socket[bytes]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(f"tcp://127.0.0.1:{port}")
    return sock


def wait_subscribed(sock: zmq.Socket[bytes], timeout: float = 20) -> None:
    if not sock.poll(int(timeout * 1000)):
        raise RuntimeError("no subscriber")
    sock.recv()


def send_all(sock: zmq.Socket[bytes], stream: list[bytes]) -> None:
    send = sock.send
    for f in stream:
        send(f)


def subscriber(port: int) -> zmq.Socket[bytes]:
    """A SUB socket on the publisher's port, every topic, no receive limit."""
    s: zmq.Socket[bytes] = zmq.Context().socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def bare_sub(port: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    s = subscriber(port)
    got = 0
    loads = orjson.loads
    while got < n:
        frame = s.recv()
        loads(frame.partition(b" ")[2])
        got += 1
    out.put(time.perf_counter())


def receive_only(port: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    s = subscriber(port)
    recv = s.recv
    for _ in range(n):
        recv()
    out.put(time.perf_counter())


def seed_sub(port: int, redis_port: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    r = redis.Redis(port=redis_port)
    s = subscriber(port)
    types = set()
    for _ in range(n):
        ev = orjson.loads(s.recv().partition(b" ")[2])
        t = corpus.utc_minute(ev["time"])
        y, m, d, h, mi = f"{t:%Y}", f"{t:%m}", f"{t:%d}", f"{t:%H}", f"{t:%M}"
        types.add(ev["type"])
        for acc in (ev["data"]["account"], "all"):
            base = f"{acc}/{ev['type']}"
            r.hincrby(f"{base}/{y}", m, 1)
            r.hincrby(f"{base}/{y}/{m}", d, 1)
            r.hincrby(f"{base}/{y}/{m}/{d}", h, 1)
            r.hincrby(f"{base}/{y}/{m}/{d}/{h}", mi, 1)
    out.put(time.perf_counter())
    assert sum(int(r.hget(f"all/{t}/2013", "09") or 0) for t in types) == n


def run_process_bench(target, args: tuple, frames: list[bytes]) -> float:  # type: ignore[no-untyped-def,type-arg]
    port = free_port()
    pub = publisher(port)
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=target, args=(port, *args, q))
    proc.start()
    wait_subscribed(pub)
    t0 = time.perf_counter()
    send_all(pub, frames)
    done = q.get(timeout=600)
    proc.join(30)
    pub.close(0)
    return len(frames) / (done - t0)


def tallyd_rate(
    s: Stream, redis_url: str | None = None, durable: bool = False
) -> tuple[float, float]:
    """Events/s until the store holds them all (read from the store itself), and
    send rate; then the store's counts are checked exactly."""
    port = free_port()
    pub = publisher(port)
    n = len(s.frames)
    t = Tallyd(
        "--zmq",
        f"tcp://127.0.0.1:{port}",
        "--zmq-hwm",
        str(n),
        store=redis_url,
        durable=durable,
    )
    store = StoreCounts(t.store)
    try:
        wait_subscribed(pub)
        t0 = time.perf_counter()
        send_all(pub, s.frames)
        sent = time.perf_counter()
        done = until_counted(store, s.types, n)
        check_counts(store, s.counts)
    finally:
        store.close()
        t.stop()
        pub.close(0)
    return n / (done - t0), n / (sent - t0)


def start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.3)
    return proc, port


def measure(
    s: Stream, redis_port: int | None, seed_events: int, rounds: int, durable: bool = False
) -> tuple[list[tuple[str, str]], dict[str, object], dict[str, float]]:
    """One stream against its ceiling: table rows, figures and ratios (names prefixed).

    The machine is shared and noisy, so the ceiling and tallyd alternate within each
    round, each ratio is taken within its round, and the median of the rounds is
    reported with its spread.
    """
    n, p = len(s.frames), s.prefix
    floor = run_process_bench(receive_only, (n,), s.frames)
    ceilings: list[float] = []
    sqlite_rates: list[float] = []
    redis_rates: list[float] = []
    # --durable over plain, each within its round: (SQLite, Redis).
    durable_sqlite: list[float] = []
    durable_redis: list[float] = []
    send_rate = 0.0
    for _ in range(rounds):
        ceilings.append(run_process_bench(bare_sub, (n,), s.frames))
        rate, send_rate = tallyd_rate(s)
        sqlite_rates.append(rate)
        if durable:
            durable_sqlite.append(tallyd_rate(s, durable=True)[0] / rate)
        if redis_port is not None:
            url = f"redis://127.0.0.1:{redis_port}/0"
            redis.Redis(port=redis_port).flushall()
            redis_rates.append(tallyd_rate(s, url)[0])
            if durable:
                redis.Redis(port=redis_port).flushall()
                durable_redis.append(tallyd_rate(s, url, durable=True)[0] / redis_rates[-1])
    mean = sum(map(len, s.frames)) / n
    ceiling = median(ceilings)
    rate = median(sqlite_rates)
    vs_sqlite = [r / c for r, c in zip(sqlite_rates, ceilings, strict=True)]
    figures: dict[str, object] = {
        f"{p}events": n,
        f"{p}rounds": rounds,
        f"{p}mean_frame_bytes": round(mean),
        f"{p}ceiling_per_s": round(ceiling),
        f"{p}receive_only_per_s": round(floor),
        f"{p}tallyd_sqlite_per_s": round(rate),
        f"{p}publisher_send_per_s": round(send_rate),
        f"{p}vs_ceiling_sqlite_spread": spread(vs_sqlite),
    }
    ratios = {
        f"{p}vs_ceiling_sqlite": round(median(vs_sqlite), 3),
        f"{p}vs_receive_only_sqlite": round(rate / floor, 3),
    }
    rows = [
        (f"{s.shape} stream", f"{n:,} events, {mean:.0f} bytes a frame on average"),
        ("  bare pyzmq SUB, receive only", f"{floor:,.0f} events/s"),
        (
            "  bare pyzmq SUB + orjson (ceiling)",
            f"{ceiling:,.0f} events/s (median of {rounds}: {span(ceilings)})",
        ),
        (
            "  tallyd on SQLite, until in the store",
            f"{rate:,.0f} events/s  {p}vs_ceiling_sqlite {median(vs_sqlite):.3f}"
            f" ({spread(vs_sqlite)}; target ≥ 0.7)",
        ),
    ]
    for store, values in (("sqlite", durable_sqlite), ("redis", durable_redis)):
        if values:
            ratios[f"{p}durable_vs_plain_{store}"] = round(median(values), 3)
            figures[f"{p}durable_vs_plain_{store}_spread"] = spread(values)
            rows.append(
                (
                    f"  tallyd --durable on {store}",
                    f"{p}durable_vs_plain_{store} {median(values):.3f} ({spread(values)}; "
                    "over the plain run of the same round; target ≥ 0.5)",
                )
            )
    if redis_port is None:
        rows.append(("  Redis runs", "skipped: redis-server is not installed"))
        return rows, figures, ratios
    redis_rate = median(redis_rates)
    vs_redis = [r / c for r, c in zip(redis_rates, ceilings, strict=True)]
    figures[f"{p}tallyd_redis_per_s"] = round(redis_rate)
    figures[f"{p}vs_ceiling_redis_spread"] = spread(vs_redis)
    ratios[f"{p}vs_ceiling_redis"] = round(median(vs_redis), 3)
    rows.append(
        (
            "  tallyd on Redis, until in the store",
            f"{redis_rate:,.0f} events/s  {p}vs_ceiling_redis {median(vs_redis):.3f}"
            f" ({spread(vs_redis)}; target ≥ 0.7)",
        )
    )
    if seed_events:
        redis.Redis(port=redis_port).flushall()
        seed = run_process_bench(seed_sub, (redis_port, seed_events), s.frames[:seed_events])
        figures[f"{p}seed_redis_per_s"] = round(seed)
        ratios[f"{p}vs_seed"] = round(redis_rate / seed, 1)
        rows.append(
            (
                "  seed design: HINCRBY per increment (Redis)",
                f"{seed:,.0f} events/s; tallyd on Redis: {redis_rate / seed:,.0f}x (target ≥ 100x)",
            )
        )
    return rows, figures, ratios


def spread(values: list[float]) -> str:
    """The range of ratios across rounds, as text: `0.681-0.742`."""
    return f"{min(values):.3f}-{max(values):.3f}"


def span(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def main() -> None:
    args = arguments(shapes=True)
    n = 200_000 if args.quick else 1_000_000
    rounds = 3 if args.quick else 5
    shapes = ["realistic", "minimal"] if args.shape == "both" else [args.shape]
    rows: list[tuple[str, str]] = []
    figures: dict[str, object] = {}
    ratios: dict[str, float] = {}
    started = start_redis()
    try:
        for i, shape in enumerate(shapes):
            seed_events = 0 if i else 2_000 if args.quick else 20_000
            r, f, q = measure(
                stream(shape, n),
                started[1] if started else None,
                seed_events,
                rounds,
                args.durable,
            )
            rows += r
            figures.update(f)
            ratios.update(q)
    finally:
        if started:
            started[0].terminate()
            started[0].wait()
    report("ingest_zmq", rows, figures, ratios)


if __name__ == "__main__":
    main()
