"""HTTP ingest: events/s through `POST /api/events` until every one is counted.

    python bench/ingest_http.py [--quick]

Bodies of 1,000 events (the Bootic shape, 1,000 accounts) are posted by four
keep-alive connections; the clock stops when the store holds them all, checked
exactly. The reference, measured in the same run on the same bodies, is the
bare cost of decoding them with orjson in one process: the ceiling of any
Python ingest path.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tallyd, quick, report

PER_BODY = 1000


def bodies(n: int) -> list[bytes]:
    out = []
    t0 = 1_378_389_787
    for b in range(n // PER_BODY):
        evs = [
            {
                "type": "pageview",
                "data": {"account": f"acct{(b * PER_BODY + i) % 1000}"},
                "time": t0 + i,
            }
            for i in range(PER_BODY)
        ]
        out.append(orjson.dumps(evs))
    return out


def decode_rate(payloads: list[bytes]) -> float:
    t0 = time.perf_counter()
    n = 0
    for body in payloads:
        n += len(orjson.loads(body))
    return n / (time.perf_counter() - t0)


def main() -> None:
    short = quick()
    total = 200_000 if short else 1_000_000
    payloads = bodies(total)
    ceiling = max(decode_rate(payloads) for _ in range(3))

    t = Tallyd("--max-body", str(8 << 20))
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
                r.read()
                if r.status != 202:
                    errors.append(str(r.status))
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=post, args=(p,)) for p in parts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        posted = time.perf_counter() - t0
        while True:
            status, _body = t.request(
                "POST", "/api/events?wait=flush", b'{"type":"probe","data":{"account":"bench"}}'
            )
            assert status == 202
            counted = t.get_json("/api/stats/track/all/pageview")["total"]
            if counted >= total:
                break
        elapsed = time.perf_counter() - t0
        assert not errors, errors[:5]
        assert counted == total, (counted, total)
    finally:
        t.stop()

    rate = total / elapsed
    figures = {
        "events": total,
        "events_per_s": round(rate),
        "post_seconds": round(posted, 3),
        "until_counted_seconds": round(elapsed, 3),
        "decode_ceiling_per_s": round(ceiling),
    }
    ratios = {"vs_decode": round(rate / ceiling, 3)}
    rows = [
        ("events", f"{total:,} in bodies of {PER_BODY:,}, 4 connections"),
        ("tallyd, posted until counted", f"{rate:,.0f} events/s ({elapsed:.2f} s)"),
        ("bare orjson decode (reference)", f"{ceiling:,.0f} events/s"),
        ("ratio", f"{rate / ceiling:.3f}"),
    ]
    report("ingest_http", rows, figures, ratios)


if __name__ == "__main__":
    main()
