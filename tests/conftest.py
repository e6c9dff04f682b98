"""Fixtures that run the real thing: a `tallyd serve` process on a free port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tallyd.stores import Store, open_store

REPO = Path(__file__).resolve().parent.parent


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


class Server:
    """A `tallyd serve` child process and an HTTP client for it."""

    def __init__(
        self, tmp: Path, *args: str, db: Path | None = None, store: str | None = None
    ) -> None:
        self.tmp = tmp
        self.db = db or tmp / "tallyd.db"
        self.store = store or f"sqlite:///{self.db}"
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"tallyd-{self.port}.log"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "tallyd",
            "serve",
            "--store",
            self.store,
            "--http",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tallyd exited early:\n{self.log.read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tallyd did not answer in time:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def restart(self) -> Server:
        assert self.stop() == 0, self.log.read_text()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self.start()

    def post(self, events: object, **params: str) -> httpx.Response:
        return self.client.post("/api/events", json=events, params=params)

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.client.get(path, params=params)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (`name` may carry its labels, or give them here);
        0 when absent."""
        label = ",".join(f'{k}="{v}"' for k, v in labels.items())
        sample = f"{name}{{{label}}}" if labels else name
        found = re.search(rf"^{re.escape(sample)} (\S+)$", self.get("/metrics").text, re.M)
        return float(found.group(1)) if found else 0.0


class Producer:
    """Threads posting batches of events until stopped; `acked` counts the 202s."""

    def __init__(
        self, server: Server, threads: int = 1, batch: int = 50, accounts: int = 20
    ) -> None:
        self.url = server.url
        self.batch = batch
        self.accounts = accounts
        self.acked = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Producer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            i = 0
            while not self._stop.is_set():
                events = [
                    {
                        "event": "pageview",
                        "account": f"a{(i + j) % self.accounts}",
                        "time": 1_378_389_787 + (i + j) * 7,
                    }
                    for j in range(self.batch)
                ]
                i += self.batch
                try:
                    r = c.post("/api/events", json=events)
                except httpx.TransportError:
                    return  # the server went away: only what it acknowledged counts
                if r.status_code != 202:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                with self._lock:
                    self.acked += r.json()["accepted"]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def start(self) -> Server:
            started.append(self)
            return super().start()

    yield Tracked
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture
def server(server_factory: type[Server], tmp_path: Path) -> Server:
    return server_factory(tmp_path).start()


def wait_until(read: Callable[[], int], want: int, timeout: float = 30) -> int:
    """Poll `read` until it reaches `want` (or time runs out); returns the last value."""
    deadline = time.monotonic() + timeout
    got = read()
    while got < want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = read()
    return got


def require(binary: str) -> str:
    """The path of a server binary; missing is a failure under CI, a skip elsewhere."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"{binary} is not installed (./scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """A real redis-server on a free loopback port, its data in a temp dir.

    Append-only with fsync on every write, so a kill -9 and a restart keep
    every acknowledged write, as a production Redis configured for it would.
    """

    def __init__(self, binary: str, data: Path, *extra: str) -> None:
        self.binary = binary
        self.data = data
        self.extra = list(extra)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class RedisCluster:
    """Three real redis-server masters made one cluster by `redis-cli --cluster create`."""

    def __init__(self, binary: str, cli: str, data: Path) -> None:
        flags = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        )
        self.cli = cli
        # The bus port is given: the default (port + 10000) may be out of range or taken.
        self.nodes = [
            RedisServer(binary, data / f"node{i}", *flags, "--cluster-port", str(free_port()))
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        self.start_nodes()
        self.create()
        return self

    def start_nodes(self) -> None:
        """The servers, in cluster mode but not yet one cluster: no slot is served."""
        for n in self.nodes:
            n.start()

    def create(self) -> None:
        """Make the running nodes one cluster, their slots assigned, and wait until it is ok."""
        nodes = [f"127.0.0.1:{n.port}" for n in self.nodes]
        out = subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for n in self.nodes:
                try:
                    info = redis.Redis(port=n.port, socket_timeout=2).cluster("info")
                    states.append(info.get("cluster_state") if isinstance(info, dict) else "")
                except redis.RedisError:
                    states.append("down")
            if all(s == "ok" for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis cluster did not come up")

    def flushall(self) -> None:
        import redis

        for n in self.nodes:
            redis.Redis(port=n.port).flushall()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(
        require("redis-server"), require("redis-cli"), tmp_path_factory.mktemp("cluster")
    ).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(require("redis-server"), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(params=["sqlite", "redis", "redis+cluster"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn, empty: a test taking it runs once per store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/contract.db"
    fixture = "redis_url" if request.param == "redis" else "cluster_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()
