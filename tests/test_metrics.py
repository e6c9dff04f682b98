"""/metrics: the request-latency histogram, as Prometheus reads it."""

from __future__ import annotations

import re
from pathlib import Path

from tallyd.metrics import Histogram, Metrics
from tests.conftest import Server


def test_every_answer_is_timed_in_the_latency_histogram(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(tmp_path).start()
    server.get("/badge/o/n.svg")  # read from the store
    for _ in range(5):
        server.get("/badge/o/n.svg")  # the cached fast path
    server.post([{"event": "pageview", "account": "a", "time": 1_378_389_787}])
    server.get("/api/stats/track/nope")  # a 404
    text = server.get("/metrics").text
    assert "# TYPE tallyd_http_request_duration_seconds histogram" in text
    buckets = [
        (le, float(v))
        for le, v in re.findall(
            r'^tallyd_http_request_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
        )
    ]
    count = float(re.search(r"^tallyd_http_request_duration_seconds_count (\S+)$", text, re.M)[1])  # type: ignore[index]
    assert buckets[-1] == ("+Inf", count)
    # Every request before /metrics itself (and /healthz probes at start) is in it.
    assert count >= 8
    values = [v for _, v in buckets]
    assert values == sorted(values)


def test_the_histogram_is_cumulative_with_its_sum() -> None:
    h = Histogram()
    for s in (0.0001, 0.0007, 0.003, 0.003, 20.0):
        h.observe(s)
    lines = {suffix + labels: v for suffix, labels, v in h.samples()}
    assert lines['_bucket{le="0.0005"}'] == 1
    assert lines['_bucket{le="0.001"}'] == 2
    assert lines['_bucket{le="0.005"}'] == 4
    assert lines['_bucket{le="10"}'] == 4
    assert lines['_bucket{le="+Inf"}'] == 5 == lines["_count"]
    assert abs(lines["_sum"] - 20.0068) < 1e-9


def test_values_are_written_to_their_last_digit() -> None:
    m = Metrics()
    m.reject("http", "new_name_limit", 1_230_872)
    m.duplicates = 2**53 + 1  # past a float's integers: still exact
    m.flush_seconds = 1234567.125
    m.gauge("tallyd_test_ratio", "A ratio.", lambda: 0.1)
    m.counter("tallyd_test_total", "A counter read as a float.", lambda: 1e6)
    text = m.render()
    assert 'tallyd_events_rejected_total{source="http",reason="new_name_limit"} 1230872\n' in text
    assert f"tallyd_events_duplicate_total {2**53 + 1}\n" in text
    assert "tallyd_flush_seconds_total 1234567.125\n" in text
    assert "tallyd_test_ratio 0.1\n" in text
    assert "tallyd_test_total 1000000\n" in text
    # Every sample line parses back to the value it was given.
    for line in text.splitlines():
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
