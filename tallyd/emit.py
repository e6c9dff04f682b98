"""`tallyd emit`: test and load traffic to a ZeroMQ bus or the HTTP API.

Prints, as its last line, a JSON summary of exactly what it sent (per event
type and, up to 10,000 of them, per account), so a test can compare counts.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import zmq

from tallyd.ingest.zmq import endpoint

CHUNK = 1000
MAX_ACCOUNTS_REPORTED = 10_000


@dataclass
class Plan:
    accounts: list[str]
    weights: list[float] | None
    events: list[str]
    statuses: list[str]
    start: float | None
    end: float | None
    seq: bool
    publisher: str
    rnd: random.Random
    sent_events: Counter[str] = field(default_factory=Counter)
    sent_accounts: Counter[str] = field(default_factory=Counter)
    next_seq: int = 1

    def chunk(self, n: int) -> list[dict[str, Any]]:
        """n events, as the Bootic publisher shapes them."""
        rnd = self.rnd
        accounts = rnd.choices(self.accounts, cum_weights=self.weights, k=n)
        types = rnd.choices(self.events, k=n)
        out = []
        for account, event in zip(accounts, types, strict=True):
            data: dict[str, Any] = {"account": account}
            if event == "order" and self.statuses:
                data["status"] = rnd.choice(self.statuses)
            ev: dict[str, Any] = {"type": event, "data": data}
            if self.start is not None and self.end is not None:
                ev["time"] = int(rnd.uniform(self.start, self.end))
            if self.seq:
                ev["seq"] = self.next_seq
                ev["publisher"] = self.publisher
                self.next_seq += 1
            out.append(ev)
        self.sent_events.update(types)
        self.sent_accounts.update(accounts)
        return out


def _plan(args: argparse.Namespace) -> Plan:
    names = [f"{args.account_prefix}{i}" for i in range(args.accounts)]
    weights = None
    if args.dist == "zipf":
        weights = list(itertools.accumulate(1 / (k**args.zipf_s) for k in range(1, len(names) + 1)))
    start = _when(args.time_from) if args.time_from else None
    end = _when(args.time_to) if args.time_to else (time.time() if start is not None else None)
    return Plan(
        names,
        weights,
        args.events.split(","),
        [s for s in args.statuses.split(",") if s],
        start,
        end,
        args.seq,
        args.publisher or uuid.uuid4().hex[:8],
        random.Random(args.seed),
    )


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
        return dt.timestamp()


class Progress:
    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and not final):
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        if self.total:
            filled = int(30 * done / self.total)
            bar = "█" * filled + "·" * (30 - filled)
            sys.stderr.write(f"\r{bar} {done:,}/{self.total:,} {rate:,.0f}/s")
        else:
            sys.stderr.write(f"\r{done:,} sent {rate:,.0f}/s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _paced(args: argparse.Namespace) -> Any:
    """Yield chunk sizes until the count or duration is reached, at the target rate."""
    t0 = time.monotonic()
    sent = 0
    while True:
        if args.count is not None and sent >= args.count:
            return
        if args.duration is not None and time.monotonic() - t0 >= args.duration:
            return
        n = CHUNK if args.count is None else min(CHUNK, args.count - sent)
        if args.rate:
            n = min(n, max(1, args.rate // 10))
            ahead = sent / args.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        yield n
        sent += n


def _wait_subscribers(sock: zmq.Socket[bytes], want: int, timeout: float) -> int:
    """Read XPUB subscription messages until `want` subscriptions are seen."""
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < want:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000)):
            break
        msg = sock.recv()
        if msg[:1] == b"\x01":
            seen += 1
    return seen


def emit_zmq(args: argparse.Namespace, plan: Plan, progress: Progress) -> int:
    ctx = zmq.Context()
    # XPUB rather than PUB: it hears subscriptions, so we know when tallyd listens
    # (the slow-joiner problem) instead of sleeping and hoping.
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, args.hwm)
    target = endpoint(args.zmq)
    (sock.bind if args.bind else sock.connect)(target)
    if args.wait_subscribers:
        got = _wait_subscribers(sock, args.wait_subscribers, args.wait_timeout)
        if got < args.wait_subscribers:
            sys.stderr.write(
                f"tallyd emit: only {got} of {args.wait_subscribers} subscriber(s) "
                f"after {args.wait_timeout}s\n"
            )
            sock.close(0)
            ctx.term()
            raise SystemExit(1)
    send = sock.send
    send_multipart = sock.send_multipart
    dumps = orjson.dumps
    sent = 0
    for n in _paced(args):
        for ev in plan.chunk(n):
            payload = dumps(ev)
            topic = (args.topic or ev["type"]).encode()
            if args.format == "frame":
                send(topic + b" " + payload)
            elif args.format == "multipart":
                send_multipart([topic, payload])
            else:
                send(payload)
        sent += n
        progress.update(sent)
    sock.close(linger=int(args.linger * 1000))
    ctx.term()
    return sent


def emit_http(args: argparse.Namespace, plan: Plan, progress: Progress) -> int:
    url = urlsplit(args.http)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=30)
    path = (url.path.rstrip("/") or "") + "/api/events"
    sent = 0
    for n in _paced(args):
        batch = plan.chunk(n)
        conn.request(
            "POST", path, body=orjson.dumps(batch), headers={"content-type": "application/json"}
        )
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 202:
            raise SystemExit(f"tallyd emit: {resp.status} {body[:200]!r}")
        sent += orjson.loads(body)["accepted"]
        progress.update(sent)
    conn.close()
    return sent


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--zmq", metavar="ENDPOINT", help="publish to this ZeroMQ endpoint")
    where.add_argument("--http", metavar="URL", help="POST to tallyd at this base URL")
    p.add_argument(
        "--bind", action="store_true", help="bind the ZeroMQ endpoint (default: connect)"
    )
    p.add_argument(
        "--format",
        choices=["frame", "multipart", "bare"],
        default="frame",
        help="ZeroMQ framing: '<topic> <json>', [topic, json], or bare JSON",
    )
    p.add_argument("--topic", help="ZeroMQ topic (default: the event type)")
    how_much = p.add_mutually_exclusive_group()
    how_much.add_argument("-n", "--count", type=int, help="events to send (default 1000)")
    how_much.add_argument("--duration", type=float, help="seconds to keep sending")
    p.add_argument("--rate", type=int, default=0, help="events per second (0: flat out)")
    p.add_argument("--accounts", type=int, default=100, help="how many accounts")
    p.add_argument("--account-prefix", default="acct", help="account names: PREFIX0, PREFIX1, …")
    p.add_argument("--dist", choices=["uniform", "zipf"], default="uniform")
    p.add_argument("--zipf-s", type=float, default=1.1, help="zipf exponent")
    p.add_argument("--events", default="pageview", help="comma-separated event types")
    p.add_argument("--statuses", default="paid,pending,failed", help="order statuses")
    p.add_argument("--from", dest="time_from", help="explicit times from (ISO or Unix seconds)")
    p.add_argument("--to", dest="time_to", help="explicit times to (default: now)")
    p.add_argument("--no-seq", dest="seq", action="store_false", help="leave out seq numbers")
    p.add_argument("--publisher", help="publisher id sent with seq (default: random)")
    p.add_argument("--seed", type=int, help="random seed, for repeatable traffic")
    p.add_argument(
        "--wait-subscribers",
        type=int,
        default=1,
        help="ZeroMQ: wait for this many subscriptions before sending (0: don't)",
    )
    p.add_argument("--wait-timeout", type=float, default=10.0)
    p.add_argument("--hwm", type=int, default=1_000_000, help="ZeroMQ send high-water mark")
    p.add_argument("--linger", type=float, default=30.0, help="seconds to finish delivery at exit")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when it is a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    if args.count is None and args.duration is None:
        args.count = 1000
    plan = _plan(args)
    progress = Progress(args.count, sys.stderr.isatty() if args.progress is None else args.progress)
    t0 = time.perf_counter()
    sent = emit_zmq(args, plan, progress) if args.zmq else emit_http(args, plan, progress)
    seconds = time.perf_counter() - t0
    progress.update(sent, final=True)
    summary: dict[str, Any] = {
        "sent": sent,
        "seconds": round(seconds, 3),
        "rate": round(sent / seconds) if seconds else None,
        "target": args.zmq or args.http,
        "publisher": plan.publisher if plan.seq else None,
        "by_event": dict(plan.sent_events),
    }
    if len(plan.sent_accounts) <= MAX_ACCOUNTS_REPORTED:
        summary["by_account"] = dict(plan.sent_accounts)
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0
