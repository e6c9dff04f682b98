"""Where every ingest source hands over decoded events.

One place parses, counts, and accounts for rejections (metric + rate-limited
log line), so HTTP, ZeroMQ and syslog behave the same on bad input.
"""

from __future__ import annotations

import time
from typing import Any

from tallyd.aggregator import Aggregator
from tallyd.events import Rejected, RejectLog, parse
from tallyd.metrics import Metrics


class Intake:
    def __init__(
        self, aggregator: Aggregator, metrics: Metrics, breakdowns: dict[str, str]
    ) -> None:
        self.aggregator = aggregator
        self.metrics = metrics
        self.breakdowns = breakdowns
        self.reject_log = RejectLog()

    def count(self, obj: Any, source: str, now: float | None = None) -> bool:
        """Count one decoded event: True, or False for a duplicate id.

        Raises `Rejected` (already logged and counted in the metrics).
        """
        try:
            ev = parse(obj, self.breakdowns, time.time() if now is None else now)
        except Rejected as err:
            self.reject(source, err)
            raise
        if self.aggregator.add(ev):
            self.metrics.accept(source)
            return True
        return False

    def reject(self, source: str, err: Rejected) -> None:
        self.metrics.reject(source, err.reason)
        self.reject_log(source, err)
