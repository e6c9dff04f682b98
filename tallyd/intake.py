"""Where every ingest source hands over decoded events.

One place parses, counts, and accounts for rejections (metric + rate-limited
log line), so HTTP, ZeroMQ and syslog behave the same on bad input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tallyd.aggregator import Aggregator
from tallyd.events import Rejected, RejectLog, parse_many
from tallyd.hotpath import count_known
from tallyd.metrics import Metrics


@dataclass
class Counted:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, Rejected]]


class Intake:
    def __init__(
        self, aggregator: Aggregator, metrics: Metrics, breakdowns: dict[str, str]
    ) -> None:
        self.aggregator = aggregator
        self.metrics = metrics
        self.breakdowns = breakdowns
        self.reject_log = RejectLog()
        # Names that passed full validation once: later events with them take the fast path.
        self.known: set[str] = set()

    def count_many(self, objs: list[Any], source: str, now: float | None = None) -> Counted:
        """Count decoded events; rejections are logged, metered and returned by index."""
        now = time.time() if now is None else now
        agg = self.aggregator
        fast, slow = count_known(objs, self.known, self.breakdowns, int(now // 60), agg.pending)
        cells, with_ids, rejected = parse_many(slow, self.breakdowns, now, self.known)
        for _, err in rejected:
            self.reject(source, err)
        agg.add_cells(cells)
        added = agg.add_many(with_ids) if with_ids else 0
        accepted = fast + len(cells) + added
        if accepted:
            self.metrics.accept(source, accepted)
        duplicates = len(with_ids) - added
        self.metrics.duplicates += duplicates
        return Counted(accepted, duplicates, rejected)

    def counted(self, source: str, n: int) -> None:
        """Account for `n` events a source's fast path counted into `pending` itself."""
        if n:
            self.metrics.accept(source, n)
            self.aggregator.grew()

    def reject(self, source: str, err: Rejected) -> None:
        self.metrics.reject(source, err.reason)
        self.reject_log(source, err)
