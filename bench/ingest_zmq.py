"""ZeroMQ ingest: events/s from a PUB socket until every event is in the store.

    python bench/ingest_zmq.py [--quick]

One publisher (this process) sends the same pre-built stream of Bootic-format
frames ("pageview {json}", 1,000 accounts, ten minutes of event times) to:

- the ceiling: a bare pyzmq SUB loop in its own process that receives and
  orjson-decodes every frame, and nothing else;
- for scale, the same loop receiving without decoding: no JSON ingest in
  Python gets past it;
- tallyd (`tallyd serve --zmq ...`) on SQLite, timed until the store file holds
  every event (read directly, not through tallyd);
- the first seed's design: a SUB loop that does one Redis HINCRBY round trip
  per increment (year, month, day, hour, for the account and for `all`), on a
  redis-server started here; timed on a slice of the stream, it is that slow.

Each run waits for the subscriber's subscription (XPUB) before sending.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tallyd, free_port, quick, report

T0 = 1_378_389_600  # 2013-09-05T14:00:00Z


def frames(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        ev = {
            "type": "pageview",
            "data": {"account": f"acct{i * 7919 % 1000}"},
            "time": T0 + i * 600 // n,
            "seq": i + 1,
        }
        out.append(b"pageview " + orjson.dumps(ev))
    return out


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
    import redis

    r = redis.Redis(port=redis_port)
    s = subscriber(port)
    for _ in range(n):
        ev = orjson.loads(s.recv().partition(b" ")[2])
        t = time.gmtime(ev["time"])
        y, m, d, h = f"{t.tm_year}", f"{t.tm_mon:02d}", f"{t.tm_mday:02d}", f"{t.tm_hour:02d}"
        for acc in (ev["data"]["account"], "all"):
            base = f"{acc}/{ev['type']}"
            r.hincrby(f"{base}/{y}", m, 1)
            r.hincrby(f"{base}/{y}/{m}", d, 1)
            r.hincrby(f"{base}/{y}/{m}/{d}", h, 1)
            r.hincrby(f"{base}/{y}/{m}/{d}/{h}", f"{t.tm_min:02d}", 1)
    out.put(time.perf_counter())
    assert int(r.hget("all/pageview/2013", "09") or 0) == n


def run_process_bench(target, args: tuple, stream: list[bytes]) -> float:  # type: ignore[no-untyped-def,type-arg]
    port = free_port()
    pub = publisher(port)
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=target, args=(port, *args, q))
    proc.start()
    wait_subscribed(pub)
    t0 = time.perf_counter()
    send_all(pub, stream)
    done = q.get(timeout=600)
    proc.join(30)
    pub.close(0)
    return len(stream) / (done - t0)


def tallyd_rate(stream: list[bytes], redis_url: str | None = None) -> tuple[float, float]:
    """Events/s until the store holds them all (read from the store itself), and send rate."""
    port = free_port()
    pub = publisher(port)
    t = Tallyd("--zmq", f"tcp://127.0.0.1:{port}", "--zmq-hwm", str(len(stream)), store=redis_url)
    n = len(stream)
    if redis_url:
        import redis

        r = redis.Redis.from_url(redis_url)

        def stored() -> int:
            return int(r.hget("all/pageview/2013", "09") or 0)

        def per_account() -> int:
            return sum(int(r.hget(f"acct{i}/pageview", "2013") or 0) for i in range(1000))
    else:
        db = sqlite3.connect(t.store.removeprefix("sqlite:///"))

        def stored() -> int:
            row = db.execute(
                "SELECT value FROM counters WHERE key = 'all/pageview/2013' AND field = '09'"
            ).fetchone()
            return int(row[0]) if row else 0

        def per_account() -> int:
            return int(
                db.execute(
                    "SELECT sum(value) FROM counters "
                    "WHERE key LIKE 'acct%/pageview' AND field = '2013'"
                ).fetchone()[0]
            )

    try:
        wait_subscribed(pub)
        t0 = time.perf_counter()
        send_all(pub, stream)
        sent = time.perf_counter()
        while stored() < n:
            time.sleep(0.005)
        done = time.perf_counter()
        assert stored() == n and per_account() == n
    finally:
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


def main() -> None:
    short = quick()
    n = 200_000 if short else 1_000_000
    stream = frames(n)

    ceiling = max(run_process_bench(bare_sub, (n,), stream) for _ in range(2))
    floor = max(run_process_bench(receive_only, (n,), stream) for _ in range(2))
    rate, send_rate = tallyd_rate(stream)
    redis_rate = seed = None
    started = start_redis()
    if started:
        proc, rport = started
        try:
            redis_rate, _ = tallyd_rate(stream, f"redis://127.0.0.1:{rport}/0")
            import redis

            redis.Redis(port=rport).flushall()
            m = 5_000 if short else 20_000
            seed = run_process_bench(seed_sub, (rport, m), stream[:m])
        finally:
            proc.terminate()
            proc.wait()

    figures = {
        "events": n,
        "ceiling_per_s": round(ceiling),
        "receive_only_per_s": round(floor),
        "tallyd_sqlite_per_s": round(rate),
        "tallyd_redis_per_s": round(redis_rate) if redis_rate else None,
        "publisher_send_per_s": round(send_rate),
        "seed_redis_per_s": round(seed) if seed else None,
    }
    ratios: dict[str, float] = {
        "vs_ceiling_sqlite": round(rate / ceiling, 3),
        "vs_receive_only_sqlite": round(rate / floor, 3),
    }
    rows = [
        ("events", f"{n:,} (1,000 accounts, one frame each)"),
        ("bare pyzmq SUB + orjson (ceiling)", f"{ceiling:,.0f} events/s"),
        ("bare pyzmq SUB, receive only", f"{floor:,.0f} events/s"),
        (
            "tallyd on SQLite, until in the store",
            f"{rate:,.0f} events/s  ratio {rate / ceiling:.3f} (target ≥ 0.7)",
        ),
    ]
    if redis_rate and seed:
        ratios["vs_ceiling_redis"] = round(redis_rate / ceiling, 3)
        ratios["vs_seed"] = round(redis_rate / seed, 1)
        rows += [
            (
                "tallyd on Redis, until in the store",
                f"{redis_rate:,.0f} events/s  ratio {redis_rate / ceiling:.3f} (target ≥ 0.7)",
            ),
            (
                "seed design: HINCRBY per increment (Redis)",
                f"{seed:,.0f} events/s; tallyd on Redis: {redis_rate / seed:,.0f}x (target ≥ 100x)",
            ),
        ]
    else:
        rows.append(("Redis runs", "skipped: redis-server is not installed"))
    report("ingest_zmq", rows, figures, ratios)


if __name__ == "__main__":
    main()
