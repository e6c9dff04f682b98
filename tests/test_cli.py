"""The `tallyd` command line against a real store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import Server, free_port

pytestmark = pytest.mark.timeout(120)


def tallyd(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command with no TALLYD_* variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    return subprocess.run(
        [sys.executable, "-m", "tallyd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**clean, **env},
    )


def test_query_reads_what_serve_counted(server_factory: type[Server], tmp_path: Path) -> None:
    server = server_factory(tmp_path).start()
    events = [
        {"type": "pageview", "data": {"account": "acme"}, "time": f"2013-09-{d:02d}T10:00:00Z"}
        for d in (1, 5, 5, 5, 30)
    ]
    assert server.post(events).status_code == 202
    server.stop()
    store = f"sqlite:///{server.db}"
    out = tallyd("query", "acme", "pageview", "2013", "9", "--store", store, "--bars")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "acme / pageview / 2013-09"
    assert lines[-1] == "total 5"
    row5 = next(line for line in lines if line.split()[:1] == ["5"])
    assert row5.split()[1] == "3" and "█" * 40 in row5
    js = tallyd("query", "all", "pageview", "2013", "--json", "--store", store)
    assert orjson.loads(js.stdout)["data"]["9"] == 5


def test_query_rejects_a_bad_period(tmp_path: Path) -> None:
    out = tallyd("query", "a", "e", "2013", "13", "--store", f"sqlite:///{tmp_path}/x.db")
    assert out.returncode == 2 and "month must be 1..12" in out.stderr


def test_check(tmp_path: Path) -> None:
    ok = tallyd("check", "--store", f"sqlite:///{tmp_path}/ok.db")
    assert ok.returncode == 0 and "reachable" in ok.stdout
    bad = tallyd("check", "--store", "sqlite:////proc/no/such/dir/x.db")
    assert bad.returncode == 1
    assert bad.stderr.startswith("tallyd check: store sqlite:////proc/no/such/dir/x.db is not")
    assert bad.stderr.count("\n") == 1
    unknown = tallyd("check", "--store", "mongodb://x")
    assert unknown.returncode == 2 and "sqlite://" in unknown.stderr


def test_sqlite_paths_are_sqlalchemys(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # The default, sqlite:///tallyd.db, is ./tallyd.db.
    assert tallyd("check", cwd=work).returncode == 0
    rel = f"rel-{uuid.uuid4().hex[:8]}.db"
    wanted = {
        f"sqlite:///{rel}": work / rel,
        "sqlite:///./dot/same.db": work / "dot" / "same.db",
        f"sqlite:///{tmp_path}/abs.db": tmp_path / "abs.db",  # four slashes: absolute
    }
    for url, path in wanted.items():
        out = tallyd("check", "--store", url, cwd=work)
        assert out.returncode == 0, out.stderr
        assert path.exists(), url
    assert not Path("/", rel).exists()
    for path in [work / "tallyd.db", *wanted.values()]:
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM counters").fetchone() == (0,)


def test_a_flag_beats_a_variable_spelt_otherwise(tmp_path: Path) -> None:
    # Nothing listens on the variable's Redis: only the flag's store can answer.
    store = f"sqlite:///{tmp_path}/flag.db"
    out = tallyd("check", "--store", store, TALLYD_REDISHOST=f"127.0.0.1:{free_port()}")
    assert out.returncode == 0, out.stderr
    assert f"store {store} reachable" in out.stdout
    out = tallyd("check", "--redishost", f"127.0.0.1:{free_port()}", TALLYD_STORE=store)
    assert out.returncode == 1 and "redis://127.0.0.1:" in out.stderr


BAD_STORES = [
    "sqlite://",
    "sqlite://tallyd.db",
    "mongodb://localhost/tallyd",
    "redis://127.0.0.1:port/0",
    "redis+cluster://",
    "redis://127.0.0.1:6399/0?x=1",
    "redis://127.0.0.1:6399/0?socket_timeout=5&ssl_certfile=c.pem",
    "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?x=1",
]
COMMANDS = [
    ["serve"],
    ["check"],
    ["query", "acme", "pageview", "2013"],
    ["render-badges", "--out", "badges"],
    ["export"],
    ["import", "counts.jsonl"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_bad_store_url_is_one_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    for url in BAD_STORES:
        out = tallyd(*command, "--store", url, cwd=tmp_path)
        assert out.returncode == 2, (url, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith(f"tallyd: store {url!r}: ")
        assert "sqlite:///RELATIVE/PATH.db" in out.stderr
        assert "redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]" in out.stderr
        if "?" in url:
            assert "unknown option 'x'" in out.stderr or "option 'ssl_certfile'" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing was started, nothing written


def test_redis_options_in_the_store_url_reach_the_connection(
    server_factory: type[Server], redis_url: str, tmp_path: Path
) -> None:
    import redis

    name = f"tallyd-{uuid.uuid4().hex[:8]}"
    url = f"{redis_url}?socket_timeout=5&client_name={name}"
    assert tallyd("check", "--store", url).returncode == 0
    server = server_factory(tmp_path, store=url).start()
    assert server.post({"type": "pageview", "data": {"account": "acme"}}, wait="flush").json()
    client = redis.Redis.from_url(redis_url)
    try:
        assert any(c["name"] == name for c in client.client_list())
    finally:
        client.close()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--zmq", "tcp://127.0.0.1"),
        ("--zmqsocket", "localhost"),
        ("--zmq-bind", "tcp://*:http"),
        ("--syslog", "udp://127.0.0.1"),
        ("--syslog", "tcp://127.0.0.1:514"),
        ("--store-wait", "soon"),
    ],
)
def test_a_bad_endpoint_is_one_line_and_exit_2(flag: str, value: str, tmp_path: Path) -> None:
    out = tallyd(
        "serve", "--store", f"sqlite:///{tmp_path}/x.db", "--http", "127.0.0.1:0", flag, value
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert repr(value) in out.stderr


def test_port_in_use_fails_cleanly(server: Server, tmp_path: Path) -> None:
    out = tallyd(
        "serve", "--store", f"sqlite:///{tmp_path}/b.db", "--http", f"127.0.0.1:{server.port}"
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr


def test_seed_flag_alias(server_factory: type[Server], tmp_path: Path) -> None:
    s = server_factory(tmp_path)
    s.args = []
    cmd_port = s.port
    s.start()  # --http given by the fixture; check the alias parses the same way:
    from tallyd.cli import parser

    args = parser().parse_args(["serve", "--httphost", f"127.0.0.1:{cmd_port}"])
    assert args.http == f"127.0.0.1:{cmd_port}"
