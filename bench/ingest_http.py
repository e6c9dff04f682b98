"""HTTP ingest: events/s through `POST /api/events` until every one is counted.

    python bench/ingest_http.py [--quick] [--shape both|realistic|minimal] [--durable]

Bodies of 1,000 events are posted by four keep-alive connections; the clock
stops when the store (the SQLite file, read directly) holds them all, and the
store is then checked exactly against what was sent: every (account, type)
and (account, type, day) total and the `all` rollup (`corpus.expected_counts`).
Two kinds of bodies, each against its own reference (default: both):

- realistic: JSON arrays of the corpus's events (`bench/corpus.py`) as Go's
  encoding/json writes them: eight event types, 1,000 accounts, times in
  several forms, nested objects, escapes, non-ASCII text, 300-900 bytes each;
- minimal: arrays of tallyd's own minimal events (`{"type":"pageview","data":
  {"account":...},"time":<int>}`).

The reference, measured in the same run on the same bodies, is the bare cost
of decoding them with orjson in one process: the ceiling of any Python ingest
path. Ratios: `vs_decode` (realistic), `minimal_vs_decode`. With `--durable`,
each round also runs `tallyd serve --durable` (every 202 waits for the journal's
fsync): `durable_vs_plain` is its rate over the plain run's in the same round.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from statistics import median

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from common import StoreCounts, Tallyd, arguments, check_counts, report, until_counted

PER_BODY = 1000


def bodies(shape: str, n: int) -> tuple[list[bytes], corpus.Counts]:
    """The POST bodies of `n` events, and what the store must hold once counted."""
    if shape == "realistic":
        evs = corpus.events(n)
        payloads = corpus.http_bodies(n, PER_BODY, evs=evs)
    else:
        evs = corpus.minimal_events(n, seq=False)
        payloads = [orjson.dumps(evs[i : i + PER_BODY]) for i in range(0, n, PER_BODY)]
    return payloads, corpus.expected_counts(evs)


def decode_rate(payloads: list[bytes]) -> float:
    t0 = time.perf_counter()
    n = 0
    for body in payloads:
        n += len(orjson.loads(body))
    return n / (time.perf_counter() - t0)


def post_until_counted(
    payloads: list[bytes], counts: corpus.Counts, durable: bool = False
) -> tuple[float, float]:
    """Seconds to post every body, and until the store held every event."""
    total = counts.by_type().total()
    types = sorted(counts.by_type())
    t = Tallyd("--max-body", str(8 << 20), durable=durable)
    store = StoreCounts(t.store)
    try:
        parts = [payloads[i::4] for i in range(4)]
        errors: list[str] = []

        def post(chunk: list[bytes]) -> None:
            c = t.conn()
            for body in chunk:
                c.request(
                    "POST", "/api/events", body=body, headers={"content-type": "application/json"}
                )
                r = c.getresponse()
                answer = r.read()
                if r.status != 202 or orjson.loads(answer).get("rejected"):
                    errors.append(f"{r.status} {answer[:200]!r}")
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=post, args=(p,)) for p in parts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        posted = time.perf_counter() - t0
        assert not errors, errors[:5]
        elapsed = until_counted(store, types, total) - t0
        check_counts(store, counts)
    finally:
        store.close()
        t.stop()
    return posted, elapsed


def main() -> None:
    args = arguments(shapes=True)
    total = 200_000 if args.quick else 1_000_000
    shapes = ["realistic", "minimal"] if args.shape == "both" else [args.shape]
    rows: list[tuple[str, str]] = []
    figures: dict[str, object] = {}
    ratios: dict[str, float] = {}
    rounds = 3 if args.quick else 5
    for shape in shapes:
        p = "" if shape == "realistic" else f"{shape}_"
        payloads, counts = bodies(shape, total)
        # The machine is shared and noisy: the reference and tallyd alternate within
        # each round, each ratio is taken within its round, and the median is reported.
        ceilings: list[float] = []
        runs: list[tuple[float, float]] = []
        durable: list[float] = []
        for _ in range(rounds):
            ceilings.append(decode_rate(payloads))
            runs.append(post_until_counted(payloads, counts))
            if args.durable:
                durable.append(runs[-1][1] / post_until_counted(payloads, counts, True)[1])
        vs = [total / e / c for (_, e), c in zip(runs, ceilings, strict=True)]
        ratio = median(vs)
        ceiling = median(ceilings)
        posted, elapsed = sorted(runs, key=lambda r: r[1])[len(runs) // 2]
        rate = total / elapsed
        figures |= {
            f"{p}events": total,
            f"{p}rounds": rounds,
            f"{p}mean_body_bytes": round(sum(map(len, payloads)) / len(payloads)),
            f"{p}events_per_s": round(rate),
            f"{p}post_seconds": round(posted, 3),
            f"{p}until_counted_seconds": round(elapsed, 3),
            f"{p}decode_ceiling_per_s": round(ceiling),
            f"{p}vs_decode_spread": f"{min(vs):.3f}-{max(vs):.3f}",
        }
        ratios[f"{p}vs_decode"] = round(ratio, 3)
        rows += [
            (f"{shape} bodies", f"{total:,} events in bodies of {PER_BODY:,}, 4 connections"),
            ("  tallyd, posted until counted", f"{rate:,.0f} events/s ({elapsed:.2f} s, median)"),
            ("  bare orjson decode (reference)", f"{ceiling:,.0f} events/s (median)"),
            (
                f"  {p}vs_decode",
                f"{ratio:.3f} (median of {rounds}: {min(vs):.3f}-{max(vs):.3f}; target ≥ 0.5)",
            ),
        ]
        if durable:
            ratios[f"{p}durable_vs_plain"] = round(median(durable), 3)
            figures[f"{p}durable_vs_plain_spread"] = f"{min(durable):.3f}-{max(durable):.3f}"
            rows.append(
                (
                    f"  {p}durable_vs_plain",
                    f"{median(durable):.3f} (median of {rounds}: {min(durable):.3f}-"
                    f"{max(durable):.3f}; --durable over plain, same round; target ≥ 0.5)",
                )
            )
    report("ingest_http", rows, figures, ratios)


if __name__ == "__main__":
    main()
