"""Process metrics, rendered in the Prometheus text format.

Plain integers and dictionaries rather than a client library: the counters
sit on the ingest hot path, where an attribute increment is all we can afford.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable


def _value(v: float) -> str:
    """A sample's value to its last digit: `:g` wrote 1,230,872 as 1.23087e+06, and
    a counter past a million then moved in steps of ten in every rate."""
    if type(v) is int:
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def _labels(**kw: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in kw.items())
    return "{" + inner + "}"


class Histogram:
    """Counts of observations by upper bound, with their sum: a Prometheus histogram.

    Observing is a bisection and two additions: it sits on every HTTP answer."""

    # Seconds: from a cached badge's fraction of a millisecond to a slow store read.
    BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.BOUNDS, seconds)] += 1
        self.sum += seconds

    def samples(self) -> list[tuple[str, str, float]]:
        """(suffix, labels, value) lines: cumulative buckets, then sum and count."""
        out: list[tuple[str, str, float]] = []
        running = 0
        for bound, n in zip((*self.BOUNDS, math.inf), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            out.append(("_bucket", _labels(le=le), running))
        out += [("_sum", "", self.sum), ("_count", "", running)]
        return out


class Metrics:
    def __init__(self) -> None:
        # Seconds from a request's first byte to its answer being written.
        self.http_latency = Histogram()
        self.accepted: dict[str, int] = {}
        self.rejected: dict[tuple[str, str], int] = {}
        self.duplicates = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self.flush_cells = 0
        self.flushed_counter_cells = 0
        self.last_flush_cells = 0
        self.replayed_batches = 0
        self.store_errors = 0
        self.http_errors: dict[tuple[int, str], int] = {}
        self.pruned_keys = 0
        # name → (help, Prometheus type, read); filled by the parts that own the value.
        self.gauges: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def accept(self, source: str, n: int = 1) -> None:
        self.accepted[source] = self.accepted.get(source, 0) + n

    def reject(self, source: str, reason: str, n: int = 1) -> None:
        k = (source, reason)
        self.rejected[k] = self.rejected.get(k, 0) + n

    def http_error(self, status: int, error: str) -> None:
        k = (status, error)
        self.http_errors[k] = self.http_errors.get(k, 0) + 1

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        """A value that goes up and down, read when the metrics are."""
        self.gauges[name] = (help_, "gauge", read)

    def counter(self, name: str, help_: str, read: Callable[[], float]) -> None:
        """A count that only grows (so `rate()` works), kept by its owner, read when
        the metrics are; its name ends in `_total`, as Prometheus counters do."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        self.gauges[name] = (help_, "counter", read)

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_value(value)}" for labels, value in samples)

        family(
            "tallyd_events_accepted_total",
            "counter",
            "Events accepted, by source.",
            [(_labels(source=s), n) for s, n in sorted(self.accepted.items())],
        )
        family(
            "tallyd_http_errors_total",
            "counter",
            "HTTP requests refused, by status and error.",
            [
                (_labels(status=str(s), error=e), n)
                for (s, e), n in sorted(self.http_errors.items())
            ],
        )
        family(
            "tallyd_events_rejected_total",
            "counter",
            "Events rejected, by source and reason.",
            [(_labels(source=s, reason=r), n) for (s, r), n in sorted(self.rejected.items())],
        )
        family(
            "tallyd_events_duplicate_total",
            "counter",
            "Events dropped because their id was seen within the window.",
            [("", self.duplicates)],
        )
        family(
            "tallyd_flushes_total", "counter", "Batches written to the store.", [("", self.flushes)]
        )
        family(
            "tallyd_flush_seconds_total",
            "counter",
            "Time spent writing batches.",
            [("", self.flush_seconds)],
        )
        family(
            "tallyd_flush_source_cells_total",
            "counter",
            "Distinct (account, event, minute, value) cells flushed.",
            [("", self.flush_cells)],
        )
        family(
            "tallyd_flush_counter_cells_total",
            "counter",
            "Distinct (key, field) counter cells written.",
            [("", self.flushed_counter_cells)],
        )
        family(
            "tallyd_flush_last_cells",
            "gauge",
            "Counter cells in the last batch.",
            [("", self.last_flush_cells)],
        )
        family(
            "tallyd_batches_already_applied_total",
            "counter",
            "Batches the store had already applied (retries made safe).",
            [("", self.replayed_batches)],
        )
        family(
            "tallyd_store_errors_total",
            "counter",
            "Failed store operations.",
            [("", self.store_errors)],
        )
        family(
            "tallyd_pruned_keys_total",
            "counter",
            "Keys deleted by retention.",
            [("", self.pruned_keys)],
        )
        for name, (help_, kind, read) in sorted(self.gauges.items()):
            family(name, kind, help_, [("", read())])
        name = "tallyd_http_request_duration_seconds"
        out.append(f"# HELP {name} Seconds from a request's first byte to its answer.")
        out.append(f"# TYPE {name} histogram")
        out.extend(
            f"{name}{suffix}{labels} {_value(v)}"
            for suffix, labels, v in self.http_latency.samples()
        )
        return "\n".join(out) + "\n"
