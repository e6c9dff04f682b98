"""Syslog ingest over real UDP and Unix datagram sockets."""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallyd.events import Rejected
from tallyd.ingest.syslog import event_of, message_of, parse_time_local
from tests.conftest import Server, free_port, udp_port, wait_until
from tests.test_edge import Nginx, views

pytestmark = pytest.mark.timeout(120)

TIME_LOCAL = "%d/%b/%Y:%H:%M:%S %z"  # nginx's $time_local
# An event as the Bootic collector's producers sent it, one per datagram.
BOOTIC = {
    "data": {"account": "acme", "browser": {"name": "Firefox"}, "status": "paid"},
    "time": "2013-09-05T09:01:33.619303604-04:00",
    "type": "pageview",
}


def total(server: Server, account: str, event: str = "hit") -> int:
    got: int = server.get(f"/api/stats/track/{quote(account, safe='')}/{event}").json()["total"]
    return got


def wait_total(server: Server, account: str, want: int, event: str = "hit") -> int:
    return wait_until(lambda: total(server, account, event), want)


def minutes(server: Server, account: str, t: float, event: str = "hit") -> dict[str, int]:
    """The per-minute counts of the UTC hour holding Unix time `t`."""
    d = datetime.fromtimestamp(t, UTC)
    path = f"/api/stats/track/{quote(account, safe='')}/{event}"
    data: dict[str, int] = server.get(f"{path}/{d.year}/{d.month}/{d.day}/{d.hour}").json()["data"]
    return {m: n for m, n in data.items() if n}


def rejected(server: Server, source: str, reason: str) -> int:
    """`tallyd_events_rejected_total` for one source and reason, 0 when absent."""
    metrics = server.get("/metrics").text
    label = f'tallyd_events_rejected_total{{source="{source}",reason="{reason}"}} '
    found = re.search(f"^{re.escape(label)}(\\d+)$", metrics, re.M)
    return int(found.group(1)) if found else 0


def csv_line(date: str, repo: str) -> bytes:
    """nginx's RFC 3164 datagram for the edge config's `"date","escaped id"` line."""
    return f'<190>Nov 23 01:31:00 web1 badge: "{date}","{repo}"'.encode()


def test_parsing() -> None:
    bsd = b'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","benwilber%2Fbashids"\n'
    assert message_of(bsd) == (b"badge", b'"2015-12-25","benwilber%2Fbashids"')
    ietf = b'<190>1 2026-11-23T01:31:00Z web1 badge - - [x@1 a="x\\]y"][y@2 b="1"] '
    ietf += b'\xef\xbb\xbf{"event":"e"}'
    assert message_of(ietf) == (b"badge", b'{"event":"e"}')
    assert message_of(b"<190>1 2026-11-23T01:31:00Z web1 badge 12 ID1 - hello") == (
        b"badge",
        b"hello",
    )
    assert message_of(b"no syslog here") is None
    assert event_of(b'"2015-12-25","benwilber%2Fbashids"', "hit") == {
        "event": "hit",
        "account": "benwilber/bashids",
    }
    assert event_of(b'"2015-12-25","caf%C3%A9"', "view") == {"event": "view", "account": "café"}
    for bad in (b"hello", b'"2015-12-25"', b'"2015-12-25","%FF"', b"{nope"):
        assert isinstance(event_of(bad, "hit"), Rejected), bad


def test_csv_time_forms() -> None:
    when = 1796230800  # 2026-12-02T17:00:00Z
    for date in (
        "2026-12-02T17:00:00+00:00",  # $time_iso8601
        "2026-12-02T22:30:00+05:30",
        "2026-12-02T17:00:00Z",
        "02/Dec/2026:17:00:00 +0000",  # $time_local
        "02/Dec/2026:10:00:00 -0700",
        "1796230800.123",  # $msec
        "1796230800",
    ):
        line = f'"{date}","benwilber%2Fbashids"'.encode()
        got = event_of(line, "hit")
        assert got == {"event": "hit", "account": "benwilber/bashids", "time": when}, date
    # The seed's date alone has no time of day: no time, so the hit counts on arrival.
    assert event_of(b'"2015-12-25","x"', "hit") == {"event": "hit", "account": "x"}
    # In the CSV shape with a bad time: bad_time; not the CSV shape: bad_line.
    for date in (
        "",
        "yesterday",
        "2026-13-02T17:00:00+00:00",
        "2026-12-02T17:00:00+25:00",
        "02/Dek/2026:17:00:00 +0000",
        "1e400",
        "-5",
        "nan",
        "٠٢/Dec/2026:17:00:00 +0000",  # Arabic-Indic digits
    ):
        got = event_of(f'"{date}","x"'.encode(), "hit")
        assert isinstance(got, Rejected) and got.reason == "bad_time", date
    for line in (b'"2026-12-02T17:00:00Z" "x"', b"2026-12-02T17:00:00Z,x", b'"a","b","c"'):
        got = event_of(line, "hit")
        assert isinstance(got, Rejected) and got.reason == "bad_line", line


def test_time_local() -> None:
    assert parse_time_local("02/Dec/2026:17:00:00 +0000") == 1796230800.0
    assert parse_time_local("02/Dec/2026:18:30:00 +0130") == 1796230800.0
    assert parse_time_local("01/Jan/1970:00:00:00 +0000") == 0.0
    assert parse_time_local("29/Feb/2024:12:00:00 -2359") == 1709294340.0
    for bad in (
        "32/Dec/2026:17:00:00 +0000",  # no such day
        "29/Feb/2026:17:00:00 +0000",  # not a leap year
        "00/Dec/2026:17:00:00 +0000",
        "02/Dek/2026:17:00:00 +0000",  # no such month
        "02/dec/2026:17:00:00 +0000",  # nginx writes "Dec"
        "02/December/2026:17:00:00 +0000",
        "02/Dec/2026:24:00:00 +0000",
        "02/Dec/2026:17:60:00 +0000",
        "02/Dec/2026:17:00:60 +0000",
        "02/Dec/2026:17:00:00 +0060",  # no such offset
        "02/Dec/2026:17:00:00 +2400",
        "02/Dec/2026:17:00:00 0000",
        "02/Dec/2026:17:00:00 +00:00",
        "02/Dec/2026:17:00:00",
        "2/Dec/2026:17:00:00 +0000",
        "02/Dec/2026:17:00:00 +0000 ",
        "31/Dec/1969:23:59:59 +0000",  # before the epoch
        "01/Jan/1970:00:30:00 +0100",
        "",
    ):
        with pytest.raises(Rejected) as err:
            parse_time_local(bad)
        assert err.value.reason == "bad_time", bad


aware_times = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)


@given(aware_times)
def test_time_local_round_trip(dt: datetime) -> None:
    dt = dt.replace(microsecond=0)
    assert parse_time_local(dt.strftime(TIME_LOCAL)) == dt.timestamp()


@given(aware_times)
def test_every_nginx_time_variable_dates_the_hit(dt: datetime) -> None:
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)  # $msec has milliseconds
    want = int(dt.timestamp())
    for date in (dt.isoformat(), dt.strftime(TIME_LOCAL), f"{dt.timestamp():.3f}"):
        got = event_of(f'"{date}","a%2Fb"'.encode(), "hit")
        assert got == {"event": "hit", "account": "a/b", "time": want}, date


@given(st.text(max_size=40))
def test_any_date_column_is_counted_or_rejected(date: str) -> None:
    got = event_of(f'"{date}","x"'.encode(), "hit")
    if isinstance(got, Rejected):
        assert got.reason in ("bad_time", "bad_line")
    else:
        assert got["account"] == "x" and type(got.get("time", 0)) is int


def test_nginx_lines_over_udp_counted_exactly(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}").start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(5000):
            repo = "benwilber%2Fbashids" if i % 2 else "a%20b"
            s.sendto(
                f'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","{repo}"'.encode(),
                ("127.0.0.1", port),
            )
        line = b'<190>1 2026-11-23T01:31:00Z web1 app - - - {"type": "signup", "data": '
        s.sendto(line + b'{"account": "acme"}}', ("127.0.0.1", port))
        s.sendto(b"garbage", ("127.0.0.1", port))
        s.sendto(b"<190>Nov 23 01:31:00 web1 badge: not,csv", ("127.0.0.1", port))
    assert wait_total(server, "benwilber/bashids", 2500) == 2500
    assert wait_total(server, "a b", 2500) == 2500
    assert wait_total(server, "acme", 1, "signup") == 1
    metrics = server.get("/metrics").text
    assert 'tallyd_events_rejected_total{source="syslog",reason="not_syslog"} 1' in metrics
    assert 'tallyd_events_rejected_total{source="syslog",reason="bad_line"} 1' in metrics
    assert re.search(r"^tallyd_syslog_kernel_drops_total 0$", metrics, re.M)
    # Counts that only grow are Prometheus counters, so that rate() works on them.
    for name in ("tallyd_syslog_received_total", "tallyd_syslog_kernel_drops_total"):
        assert f"# TYPE {name} counter" in metrics


def test_unix_datagram_socket(server_factory: type[Server], tmp_path: Path) -> None:
    path = tmp_path / "tallyd.sock"
    server = server_factory(
        tmp_path, "--syslog", f"unix://{path}", "--syslog-event", "view"
    ).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(100):
            s.sendto(b'<190>Nov 23 01:31:00 web1 badge: "2015-12-25","x%3Ay"', str(path))
        s.sendto(orjson.dumps(BOOTIC), str(path))
        s.sendto(b"{nope}", str(path))
    assert wait_total(server, "x:y", 100, "view") == 100
    assert wait_total(server, "acme", 1, "pageview") == 1
    # Bare JSON datagrams are labelled by the socket they came on.
    assert wait_until(lambda: rejected(server, "unix", "invalid_json"), 1) == 1
    assert "rejected event from unix: invalid_json" in server.log.read_text()
    assert server.stop() == 0
    assert not path.exists()


def test_each_time_form_counts_in_its_minute(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}").start()
    # Two days ago, within the per-minute retention: 17 minutes past some UTC hour.
    hour = (int(time.time()) // 3600 - 48) * 3600
    when = datetime.fromtimestamp(hour + 17 * 60 + 5, UTC)
    india, denver = timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))
    forms = {
        "iso-utc": when.isoformat(),
        "iso-india": when.astimezone(india).isoformat(),
        "local-denver": when.astimezone(denver).strftime(TIME_LOCAL),
        "msec": f"{when.timestamp() + 0.987:.3f}",
    }
    assert forms["iso-utc"].endswith("+00:00") and forms["iso-india"].endswith("+05:30")
    before = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(50):
            for account, date in forms.items():
                s.sendto(csv_line(date, account), ("127.0.0.1", port))
            s.sendto(csv_line("2015-12-25", "seed"), ("127.0.0.1", port))
    for account in [*forms, "seed"]:
        assert wait_total(server, account, 50) == 50, account
    after = time.time()
    for account in forms:
        assert minutes(server, account, when.timestamp()) == {"17": 50}, account
    # The seed's date only: counted when it arrived, not on 2015-12-25.
    arrived = {str(datetime.fromtimestamp(t, UTC).minute) for t in (before, after)}
    seen = minutes(server, "seed", before) | minutes(server, "seed", after)
    assert set(seen) <= arrived and sum(seen.values()) == 50
    assert total(server, "seed") == 50
    assert server.get("/api/stats/track/seed/hit/2015").json()["total"] == 0


def test_bad_times_rejected_by_reason(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}").start()
    bad_times = [
        "32/Dec/2026:17:00:00 +0000",
        "02/Dek/2026:17:00:00 +0000",
        "02/Dec/2026:17:00:00 +0099",
        "2026-12-02T25:00:00+00:00",
        "yesterday",
        "",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for date in bad_times:
            s.sendto(csv_line(date, "x"), ("127.0.0.1", port))
        s.sendto(
            b'<190>Nov 23 01:31:00 web1 badge: "02/Dec/2026:17:00:00 +0000";"x"',
            ("127.0.0.1", port),
        )
        s.sendto(csv_line("02/Dec/2026:17:00:00 +0000", "good"), ("127.0.0.1", port))
    assert wait_until(lambda: rejected(server, "syslog", "bad_time"), 6) == 6
    assert wait_until(lambda: rejected(server, "syslog", "bad_line"), 1) == 1
    assert wait_total(server, "good", 1) == 1
    assert total(server, "x") == 0
    assert "rejected event from syslog: bad_time: time '32/Dec/2026" in server.log.read_text()


def test_bare_json_datagrams(server_factory: type[Server], tmp_path: Path) -> None:
    port = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{port}").start()
    recent = (int(time.time()) // 3600 - 5) * 3600 + 42 * 60
    flat = {"event": "signup", "account": "acme/shop", "time": recent}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # Go's encoding/json, as the Bootic producers sent it: one event per datagram.
        bootic = orjson.dumps(BOOTIC, option=orjson.OPT_SORT_KEYS)
        assert bootic.startswith(b'{"data":{"account":"acme",') and len(bootic) <= 1024
        for _ in range(200):
            s.sendto(bootic, ("127.0.0.1", port))
            s.sendto(orjson.dumps(flat) + b"\n", ("127.0.0.1", port))
        s.sendto(b'{"type": "pageview", "data": {"account": ', ("127.0.0.1", port))
        s.sendto(b'{"type": "pageview", "data": {}}', ("127.0.0.1", port))
        s.sendto(b"{\xff}", ("127.0.0.1", port))
        s.sendto(b"plain text", ("127.0.0.1", port))
    assert wait_total(server, "acme", 200, "pageview") == 200
    assert wait_total(server, "acme/shop", 200, "signup") == 200
    # 09:01 at -04:00 is 13:01 UTC on 2013-09-05 (hours that old are past retention).
    month = server.get("/api/stats/track/acme/pageview/2013/09").json()["data"]
    assert {d: n for d, n in month.items() if n} == {"5": 200}
    assert minutes(server, "acme/shop", recent, "signup") == {"42": 200}
    assert wait_until(lambda: rejected(server, "udp", "invalid_json"), 2) == 2
    assert rejected(server, "udp", "missing_account") == 1
    assert rejected(server, "syslog", "not_syslog") == 1
    metrics = server.get("/metrics").text
    assert 'tallyd_events_accepted_total{source="udp"} 400' in metrics
    log = server.log.read_text()
    assert "rejected event from udp: invalid_json: the message is not JSON" in log
    assert "rejected event from syslog: not_syslog" in log


def test_nginx_time_iso8601_dates_every_hit(server_factory: type[Server], tmp_path: Path) -> None:
    syslog = udp_port()
    server = server_factory(tmp_path, "--syslog", f"udp://127.0.0.1:{syslog}").start()
    badges = tmp_path / "badges"
    badges.mkdir()
    copy = tmp_path / "sent.log"
    # nginx in India's time zone: its $time_iso8601 ends in +05:30, tallyd counts in UTC.
    nginx = Nginx(tmp_path, free_port(), syslog, badges, tz="IST-5:30", copy=copy).start()
    try:
        before = time.time()
        assert views(nginx.port, "acme/site", 3_000) == [b"404"] * 3_000
        after = time.time()
        assert wait_total(server, "acme/site", 3_000) == 3_000
        time.sleep(0.5)
        assert total(server, "acme/site") == 3_000  # exactly: no hit lost, none twice
    finally:
        nginx.stop()
    lines = copy.read_text().splitlines()
    assert len(lines) == 3_000
    assert all(
        re.fullmatch(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30","acme%2Fsite"', x) for x in lines
    )
    # Each hit in the UTC minute nginx answered it, not 5:30 hours off.
    seen = minutes(server, "acme/site", before) | minutes(server, "acme/site", after)
    answered = {str(datetime.fromtimestamp(t, UTC).minute) for t in (before, after)}
    assert set(seen) <= answered and sum(seen.values()) == 3_000
