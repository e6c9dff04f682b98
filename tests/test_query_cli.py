"""`tallyd query --from/--to`: ranges across month and year ends, read from a real store."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tallyd.query import bar
from tests.conftest import Server
from tests.test_cli import tallyd

pytestmark = pytest.mark.timeout(120)

# Hour and minute counts of 2013 are kept only without retention.
FOREVER = ("--retention-minutes", "0", "--retention-hours", "0")
HITS = {
    "2013-11-30T23:59:00Z": 1,
    "2013-12-31T23:30:00Z": 2,
    "2014-01-01T00:10:00Z": 3,
    "2014-01-31T12:00:00Z": 1,
    "2014-02-01T00:00:00Z": 4,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("query")
    server = Server(tmp, *FOREVER).start()
    try:
        events = [
            {"type": "pageview", "data": {"account": "acme"}, "time": t}
            for t, n in HITS.items()
            for _ in range(n)
        ]
        assert server.post(events, wait="flush").status_code == 202
        series = server.get(
            "/api/stats/series",
            account="acme",
            event="pageview",
            **{"from": "2013-12-30"},
            to="2014-01-02",
        )
        (tmp / "api.json").write_bytes(series.content)
    finally:
        assert server.stop() == 0
    return f"sqlite:///{server.db}"


def query(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return tallyd("query", "acme", "pageview", *args, "--store", store, *FOREVER)


def table(out: str) -> list[tuple[str, str]]:
    """The (label, count) rows of a plain answer."""
    body = out.split("\n\n")[1]
    return [(row.split()[0], row.split()[1]) for row in body.splitlines()]


def test_days_across_a_year_end(store: str) -> None:
    out = query(store, "--from", "2013-12-30", "--to", "2014-01-02")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [
        "acme / pageview / 2013-12-30 .. 2014-01-02 by day (UTC)",
        "whole days: 2013-12-30T00:00 .. 2014-01-02T23:59",
    ]
    assert table(out.stdout) == [
        ("2013-12-30", "0"),
        ("2013-12-31", "2"),
        ("2014-01-01", "3"),
        ("2014-01-02", "0"),
    ]
    assert out.stdout.endswith("\ntotal 5\n")
    assert "█" not in out.stdout  # not a terminal: no bars unless asked


def test_the_header_says_which_whole_intervals_are_counted(store: str) -> None:
    # From the middle of December to the 10th of January, by month: the points are
    # whole months, so 2013-11-30's event is left out but all of January is counted.
    out = query(store, "--from", "2013-12-15T06:00", "--to", "2014-01-10", "--interval", "month")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == "whole months: 2013-12-01T00:00 .. 2014-01-31T23:59"
    assert table(out.stdout) == [("2013-12", "2"), ("2014-01", "4")]
    years = query(
        store, "--from", "2013-12-31T23:30", "--to", "2014-02-01T00:00", "--interval", "year"
    )
    assert years.stdout.splitlines()[1] == "whole years: 2013-01-01T00:00 .. 2014-12-31T23:59"
    assert table(years.stdout) == [("2013", "3"), ("2014", "8")]


@pytest.mark.parametrize(
    ("account", "event", "problem"),
    [
        ("a\x1b[31mred", "pageview", "account contains control characters"),
        ("acme", "page\nview", "event contains control characters"),
        ("acme", "pageview\x9b2J", "event contains control characters"),
        ("all", "", "event is empty"),
        ("", "pageview", "account is empty"),
    ],
)
def test_names_ingest_refuses_are_refused(
    store: str, account: str, event: str, problem: str
) -> None:
    for period in (["2013"], ["--from", "2013-12-30"]):
        out = tallyd("query", account, event, *period, "--store", store)
        assert out.returncode == 2 and out.stdout == "", out.stdout
        assert out.stderr == f"tallyd query: {problem}\n"


def test_names_are_shown_without_what_a_terminal_would_obey(store: str) -> None:
    # U+202E turns the rest of a line around on a terminal; ingest takes it as a name.
    out = tallyd("query", "acme\u202e", "page\u200bview", "2013", "--store", store)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "acme\\u202e / page\\u200bview / 2013"


def test_the_json_is_the_apis_answer(store: str) -> None:
    out = query(store, "--from", "2013-12-30", "--to", "2014-01-02", "--json")
    api = (Path(store.removeprefix("sqlite:///")).parent / "api.json").read_bytes()
    assert orjson.loads(out.stdout) == orjson.loads(api)


def test_months_across_a_year_end_as_csv(store: str) -> None:
    out = query(store, "--from", "2013-11-15", "--to", "2014-02-10", "--interval", "month", "--csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "time,count\n2013-11,1\n2013-12,2\n2014-01,4\n2014-02,4\n"


def test_the_default_interval_follows_the_range(store: str) -> None:
    def interval(start: str, end: str) -> str:
        out = query(store, "--from", start, "--to", end, "--json")
        assert out.returncode == 0, out.stderr
        return str(orjson.loads(out.stdout)["interval"])

    assert interval("2013-12-31T23:00", "2014-01-01T00:30") == "minute"  # 91 points
    assert interval("2013-12-31T22:00", "2014-01-01T01:00") == "hour"  # 181 minutes
    assert interval("2013-11-01", "2014-02-01") == "day"  # days given: never finer
    assert interval("2013-01-01", "2020-12-31") == "month"  # 96 months
    assert interval("2013-01-01", "2021-06-30") == "year"  # 102 months


def test_hours_and_minutes_across_a_month_end(store: str) -> None:
    hours = query(store, "--from", "2013-12-31T22:00", "--to", "2014-01-01T01:00")
    assert table(hours.stdout) == [
        ("2013-12-31T22:00", "0"),
        ("2013-12-31T23:00", "2"),
        ("2014-01-01T00:00", "3"),
        ("2014-01-01T01:00", "0"),
    ]
    minutes = query(store, "--from", "2013-11-30T23:58", "--to", "2013-12-01T00:00", "--csv")
    assert minutes.stdout == (
        "time,count\n2013-11-30T23:58,0\n2013-11-30T23:59,1\n2013-12-01T00:00,0\n"
    )
    # An offset is converted to the configured zone: 01:10+01:00 is 00:10 UTC.
    shifted = query(store, "--from", "2014-01-01T01:10+01:00", "--to", "2014-01-01T01:10+01:00")
    assert table(shifted.stdout) == [("2014-01-01T00:10", "3")]


def test_bars_on_a_terminal(store: str) -> None:
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    cmd = [sys.executable, "-m", "tallyd", "query", "acme", "pageview"]
    args = ["--from", "2014-01-30", "--to", "2014-02-01", "--store", store]
    proc = subprocess.run([*cmd, *args], stdout=child, stderr=subprocess.PIPE, env=env, timeout=60)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.returncode == 0, proc.stderr
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    # Scaled to the largest (4): 1 is a quarter of 40 cells, 0 no bar at all.
    assert lines[3:6] == [
        "2014-01-30  0",
        "2014-01-31  1  " + "█" * 10,
        "2014-02-01  4  " + "█" * 40,
    ]
    piped = query(store, "--from", "2014-01-30", "--to", "2014-02-01", "--bars")
    assert piped.stdout.splitlines()[3:6] == lines[3:6]


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--from", "2014-01-02", "--to", "2014-01-01"], "'to' is before 'from'"),
        (["--from", "2014-13-01"], "from must be ISO 8601, like 2013-09-05"),
        (["--from", "2014-01-01", "--to", "soon"], "to must be ISO 8601, like 2013-09-05"),
        (["--from", "2014-01-01", "--interval", "week"], "interval must be one of minute, hour"),
        (["--from", "2000-01-01", "--to", "2014-01-01", "--interval", "minute"], "more than"),
        (["2014", "--from", "2014-01-01"], "or --from/--to, not both"),
        (["--to", "2014-01-01"], "--to and --interval need --from"),
    ],
)
def test_a_bad_range_is_one_line_and_exit_2(store: str, args: list[str], problem: str) -> None:
    out = query(store, *args)
    assert out.returncode == 2, out.stdout
    assert out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("tallyd query: ") and problem in out.stderr, out.stderr


def test_a_bar_is_drawn_to_an_eighth_of_a_cell() -> None:
    assert bar(4, 4) == "█" * 40
    assert bar(1, 3) == "█" * 13 + "▍"  # 13.33 cells: 13 and 3/8
    assert bar(1, 10**6) == "▏"  # never nothing for a count above zero
    assert bar(0, 4) == ""
