"""Where every ingest source hands over decoded events.

One place parses, counts, and accounts for rejections (metric + rate-limited
log line), so HTTP, ZeroMQ and syslog behave the same on bad input.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tallyd.aggregator import Aggregator
from tallyd.events import Event, Rejected, RejectLog, parse
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

    def count(self, obj: Any, source: str, now: float | None = None) -> bool:
        """Count one decoded event: True, or False for a duplicate id.

        Raises `Rejected` (already logged and counted in the metrics).
        """
        counted = self.count_many((obj,), source, now)
        if counted.rejected:
            raise counted.rejected[0][1]
        return counted.accepted == 1

    def count_many(self, objs: Iterable[Any], source: str, now: float | None = None) -> Counted:
        """Count decoded events; rejections are logged, metered and returned by index."""
        now = time.time() if now is None else now
        breakdowns = self.breakdowns
        parsed: list[Event] = []
        rejected: list[tuple[int, Rejected]] = []
        for i, obj in enumerate(objs):
            try:
                if type(obj) is Rejected:
                    raise obj
                parsed.append(parse(obj, breakdowns, now))
            except Rejected as err:
                self.reject(source, err)
                rejected.append((i, err))
        accepted = self.aggregator.add_many(parsed)
        if accepted:
            self.metrics.accept(source, accepted)
        duplicates = len(parsed) - accepted
        self.metrics.duplicates += duplicates
        return Counted(accepted, duplicates, rejected)

    def reject(self, source: str, err: Rejected) -> None:
        self.metrics.reject(source, err.reason)
        self.reject_log(source, err)
