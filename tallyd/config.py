"""Configuration, layered once: flags, then `TALLYD_*` variables, then a TOML file.

Every field of `Config` is a flag (`--flush-interval`), an environment variable
(`TALLYD_FLUSH_INTERVAL`) and a TOML key (`flush_interval` or `flush-interval`),
built from the one list below so the three can never drift apart. Each field
names the parser that reads it (`parse=`); a field without one, or whose parser
reads another type than the field's annotation, fails at import.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from tallyd.stores import FORMS, check_url

ENV_PREFIX = "TALLYD_"
# The most --workers a core: each worker is a whole tallyd.
MAX_WORKERS_PER_CPU = 4


@dataclass(frozen=True)
class Parser:
    """How one kind of setting is read, from text (a flag, a variable) or a TOML value."""

    kind: Any  # the annotation of the fields it reads
    expected: str  # what a bad value is told it should be
    read: Callable[[Any], Any]  # raises TypeError or ValueError on a bad value
    repeatable: bool = False  # a flag given several times adds up
    switch: bool = False  # a flag that takes no value: given means true


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


def _integer(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    return int(raw)


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise TypeError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _switch(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise TypeError(raw)
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _texts(raw: object) -> list[str]:
    # A variable (or a TOML string) lists values separated by commas.
    if isinstance(raw, str):
        return [x.strip() for x in raw.split(",") if x.strip()]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise TypeError(raw)
    return list(raw)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(text)
    return host, int(port)


def _redis_host(raw: object) -> str:
    text = _text(raw)
    if not text:
        return ""  # as unset: its default
    host, port = _host_port(text)
    if not host:
        raise ValueError(raw)
    return f"redis://{host}:{port}/0"


TEXT = Parser(str, "text", _text)
INTEGER = Parser(int, "a whole number", _integer)
NUMBER = Parser(float, "a number", _number)
TEXTS = Parser(list[str], "a list of text", _texts, repeatable=True)
SWITCH = Parser(bool, "true or false", _switch, switch=True)
# The first seed's `--redishost HOST:PORT`, read as the store URL it stands for.
REDIS_HOST = Parser(str, "HOST:PORT", _redis_host)


def _opt(default: Any, help_: str, parse: Parser, **meta: Any) -> Any:
    meta = {"help": help_, "parse": parse, **meta}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    # A secret stays out of the dataclass's repr, should a Config ever be printed.
    return field(default=default, metadata=meta, repr=not meta.get("secret"))


@dataclass
class Config:
    store: str = _opt("sqlite:///tallyd.db", f"store URL: {FORMS}", TEXT)
    # Read as a store URL and put in `store` by `load`, so it is empty afterwards.
    redishost: str = _opt(
        "",
        "the first seed's flag: HOST:PORT, the same as --store redis://HOST:PORT/0 "
        "(given with --store in the same place, it wins)",
        REDIS_HOST,
        sets="store",
    )
    http: str = _opt(
        "127.0.0.1:8080", "HTTP listen address HOST:PORT", TEXT, aliases=["--httphost"]
    )
    zmq: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [],
        "connect a ZeroMQ SUB socket to ENDPOINT: tcp://HOST:PORT, ipc://PATH (repeatable)",
        TEXTS,
        aliases=["--zmqsocket", "--zmsocket"],
    )
    zmq_bind: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [], "bind a ZeroMQ SUB socket at ENDPOINT: tcp://*:PORT, ipc://PATH (repeatable)", TEXTS
    )
    zmq_topic: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [],
        "only take ZeroMQ messages with this topic prefix (repeatable)",
        TEXTS,
        aliases=["--topic"],
    )
    zmq_hwm: int = _opt(100_000, "ZeroMQ receive high-water mark, in messages", INTEGER)
    syslog: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [], "receive syslog at udp://HOST:PORT or unix:///PATH (repeatable)", TEXTS
    )
    syslog_event: str = _opt("hit", "the event type a syslog CSV line counts as", TEXT)
    timezone: str = _opt("UTC", "IANA time zone that periods are counted in", TEXT)
    flush_interval: float = _opt(0.2, "seconds between batched writes to the store", NUMBER)
    store_wait: float = _opt(
        30.0,
        "seconds to keep trying a store that is not ready at start-up (0: try once; "
        "check and query try once unless it is set)",
        NUMBER,
    )
    key_prefix: str = _opt("", "prefix for every store key", TEXT)
    breakdown: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        ["order:status"], "EVENT:PROPERTY counted per value (repeatable; 'none' for none)", TEXTS
    )
    retention_minutes: int = _opt(7, "days to keep per-minute counts (0: forever)", INTEGER)
    retention_hours: int = _opt(400, "days to keep per-hour counts (0: forever)", INTEGER)
    max_body: int = _opt(1 << 20, "largest POST body in bytes", INTEGER)
    max_body_buffered: int = _opt(
        64 << 20, "request body bytes held at once across connections (past it: 503)", INTEGER
    )
    max_connections: int = _opt(
        10_000, "open HTTP connections at most (past it: 503 with Retry-After)", INTEGER
    )
    header_timeout: float = _opt(
        10.0, "seconds a client has to send a request's whole line and headers", NUMBER
    )
    keepalive_timeout: float = _opt(
        5.0, "seconds an idle HTTP connection stays open between requests", NUMBER
    )
    max_batch_cells: int = _opt(10_000, "flush early once this many distinct cells wait", INTEGER)
    max_pending_cells: int = _opt(
        1_000_000,
        "refuse new events (503) past this many waiting cells (about 200 bytes each)",
        INTEGER,
    )
    dedup_window: float = _opt(
        600.0, "seconds an event id is remembered for de-duplication", NUMBER
    )
    dedup_max_ids: int = _opt(1_000_000, "most event ids remembered at once", INTEGER)
    max_new_ids_per_minute: int = _opt(
        0,
        "accounts, event types and badge ids new to this tallyd process counted per "
        "minute, at an even pace (at most ten seconds' worth at once); past it events "
        "are refused (429, and counted as rejected on the bus); set it above the names "
        "active in a minute after a restart (0: no limit)",
        INTEGER,
    )
    badge_rate: int = _opt(
        0,
        "badge views counted per client and id each minute (e.g. 3); more are drawn, not "
        "counted; GitHub's image proxy is exempt (0: no limit)",
        INTEGER,
    )
    wait_timeout: float = _opt(
        10.0,
        'seconds POST /api/events?wait=flush waits for the store before answering "stored": false',
        NUMBER,
    )
    durable: bool = _opt(
        False,
        "journal every accepted event to disk before acknowledging it, so a crash "
        "loses none (docs/operations.md)",
        SWITCH,
    )
    journal_dir: str = _opt(
        "",
        "directory of the --durable journal and the remembered event ids (default: "
        "beside the SQLite file as FILE.journal, or ./journal)",
        TEXT,
    )
    badge_refresh: float = _opt(
        5.0, "seconds a badge reuses its figure before reading the store again", NUMBER
    )
    unique_secret: str = _opt(
        "", "secret salting visitor hashes for metric=unique (default: random per start)", TEXT
    )
    cors_origin: str = _opt(
        "*",
        "the origin whose scripts may read the stats API and badges: *, one origin "
        "like https://example.org, or none (no CORS headers)",
        TEXT,
    )
    cors_ingest: str = _opt(
        "none",
        "the origin whose scripts may POST /api/events: none (default), *, or one origin",
        TEXT,
    )
    shutdown_timeout: float = _opt(
        30.0, "seconds a stop lets requests under way finish, then retries the last flush", NUMBER
    )
    admin_token: str = _opt(
        "",
        "the bearer token of owner actions (a badge's baseline, resetting or deleting an "
        "id's counts); better in TALLYD_ADMIN_TOKEN or the TOML file than on the command "
        "line, where ps shows it (default: owner actions off; docs/owner-actions.md)",
        TEXT,
        secret=True,
    )
    log_level: str = _opt("info", "debug, info, warning or error", TEXT)
    workers: str = _opt(
        "1",
        "worker processes sharing the HTTP and syslog ports and the bus (auto: one per "
        "CPU); 1 runs everything in this process (docs/scaling.md)",
        TEXT,
    )
    shard: str = _opt(
        "",
        "INDEX/COUNT: count only the bus events whose account hashes to this shard, so "
        "COUNT nodes share one firehose (default: every event; docs/scaling.md)",
        TEXT,
    )
    seed_api: str = _opt(
        "",
        "also serve the first seed's Go aggregator API, its routes and answer shape, under "
        "PREFIX, like /stats (default: off; docs/seed-api.md)",
        TEXT,
    )

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])

    @property
    def journal_path(self) -> str:
        """Where the journal and the remembered ids live (`--journal-dir` or beside the data)."""
        if self.journal_dir:
            return self.journal_dir
        if self.store.startswith("sqlite:"):
            from tallyd.stores.sqlite import path_of

            return path_of(self.store) + ".journal"
        return "journal"

    @property
    def worker_count(self) -> int:
        """How many processes `--workers` asks for (`auto`: one per CPU)."""
        if self.workers.strip().lower() == "auto":
            return os.cpu_count() or 1
        return int(self.workers)

    @property
    def breakdowns(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.breakdown:
            if item.lower() == "none":
                continue
            event, _, prop = item.partition(":")
            out[event] = prop
        return out

    def validate(self) -> Config:
        """Raise ValueError with a one-line message naming the bad setting."""
        try:
            _host_port(self.http)
        except ValueError:
            raise ValueError(f"--http {self.http!r}: expected HOST:PORT") from None
        check_url(self.store)
        for endpoint in self.zmq:
            _check_zmq("--zmq", endpoint, bind=False)
        for endpoint in self.zmq_bind:
            _check_zmq("--zmq-bind", endpoint, bind=True)
        for url in self.syslog:
            _check_syslog(url)
        # Each would bind the same address: one process failed on its own port, and
        # workers bound it twice.
        addresses = [_syslog_address(u) for u in self.syslog]
        for url, address in zip(self.syslog, addresses, strict=True):
            if addresses.count(address) > 1:
                raise ValueError(f"--syslog {url!r}: that address is given more than once")
        for item in self.breakdown:
            event, sep, prop = item.partition(":")
            if item.lower() != "none" and not (sep and event and prop):
                raise ValueError(f"--breakdown {item!r}: expected EVENT:PROPERTY")
        if self.flush_interval <= 0:
            raise ValueError("--flush-interval must be positive")
        if self.wait_timeout <= 0:
            raise ValueError("--wait-timeout must be positive")
        if self.max_new_ids_per_minute < 0 or self.badge_rate < 0:
            raise ValueError("--max-new-ids-per-minute and --badge-rate must be 0 or more")
        if self.dedup_window <= 0:
            raise ValueError("--dedup-window must be positive")
        journal = self.journal_dir
        if journal and os.path.exists(journal) and not os.path.isdir(journal):
            raise ValueError(f"--journal-dir {journal!r} is not a directory")
        for name in ("header_timeout", "keepalive_timeout", "max_connections", "max_body_buffered"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        for name in (
            "max_body",
            "max_batch_cells",
            "max_pending_cells",
            "dedup_max_ids",
            "zmq_hwm",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        for name in ("retention_minutes", "retention_hours", "store_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
        _check_workers(self)
        _check_token(self.admin_token)
        from tallyd.periods import Clock
        from tallyd.web import check_origin

        check_origin(self.cors_origin, "--cors-origin")
        check_origin(self.cors_ingest, "--cors-ingest")
        if self.seed_api:
            from tallyd.seedapi import check_prefix

            check_prefix(self.seed_api)
        Clock(self.timezone)
        return self

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        path: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Config:
        """Defaults < TOML file < environment < flags: the most specific source wins.

        Each source is read whole before the next, so a seed-compatible spelling
        such as `redishost` counts as a setting of its source: a `--store` flag
        beats `TALLYD_REDISHOST`, and `--redishost` beats `TALLYD_STORE`. Within
        one source, `redishost` wins over `store`, as it always has.
        `defaults` replaces some fields' defaults (for a command that needs others).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults or {})
        path = path or env.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_source(_read_toml(path), lambda name: f"config file {path}: {name}"))
        from_env = {n: env[_variable(n)] for n in FIELDS if _variable(n) in env}
        values.update(_source(from_env, _variable))
        given = {n: v for n, v in flags.items() if v is not None and n in FIELDS}
        values.update(_source(given, _flag))
        return cls(**values).validate()


FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(Config)}


def check_parsers(cls: type) -> None:
    """Raise TypeError unless every field names a Parser of the field's own type."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        parser = f.metadata.get("parse")
        if not isinstance(parser, Parser):
            raise TypeError(f"{cls.__name__}.{f.name} names no parser (parse=)")
        if parser.kind != hints[f.name]:
            raise TypeError(
                f"{cls.__name__}.{f.name} is {hints[f.name]} but its parser reads {parser.kind}"
            )


check_parsers(Config)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _variable(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _source(raw: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """One source's settings, each read by its parser; `where` names a setting in messages."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        parser: Parser = FIELDS[name].metadata["parse"]
        try:
            out[name] = parser.read(value)
        except (TypeError, ValueError):
            # A secret's value is never repeated, not even a wrong one: it goes to logs.
            shown = "…" if FIELDS[name].metadata.get("secret") else repr(value)
            raise ValueError(f"{where(name)}={shown}: expected {parser.expected}") from None
    for name, value in list(out.items()):
        target = FIELDS[name].metadata.get("sets")
        if target is not None:
            del out[name]
            if value:
                out[target] = value
    return out


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ValueError(f"config file {path}: unknown setting {key!r}")
        out[name] = value
    return out


ZMQ_TRANSPORTS = ("tcp", "ipc", "inproc", "pgm", "epgm")


def _check_zmq(flag: str, endpoint: str, bind: bool) -> None:
    from tallyd.ingest.zmq import endpoint as normalised

    where = "tcp://*:PORT" if bind else "tcp://HOST:PORT"
    problem = f"{flag} {endpoint!r}: expected {where}, ipc://PATH or inproc://NAME"
    transport, sep, address = normalised(endpoint).partition("://")
    if not sep or transport not in ZMQ_TRANSPORTS or not address:
        raise ValueError(problem)
    if transport == "tcp":
        host, _, port = address.rpartition(":")
        number = port.isdigit() and 0 < int(port) < 65536
        if not host or not (number or (bind and port == "*")):
            raise ValueError(problem)


def _check_workers(cfg: Config) -> None:
    from tallyd.shard import Shard

    Shard.parse(cfg.shard)
    try:
        workers = cfg.worker_count
    except ValueError:
        raise ValueError(f"--workers {cfg.workers!r}: expected a number or auto") from None
    if workers < 1:
        raise ValueError("--workers must be 1 or more")
    most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if workers > most:
        # Each is a whole tallyd: past a few a core they only fight for it (and
        # --workers 100000 once forked until the machine thrashed).
        raise ValueError(f"--workers {workers}: at most {most} ({MAX_WORKERS_PER_CPU} a core)")
    if workers > 1 and cfg.zmq_bind:
        raise ValueError("--zmq-bind takes one process: with --workers, use --zmq (connect)")
    if workers > 1 and any(u.startswith("unix:") for u in cfg.syslog):
        raise ValueError("--syslog unix:// takes one process: with --workers, use udp://")


# The shortest admin token taken: a short one could be guessed over the network.
MIN_TOKEN = 16


def _check_token(token: str) -> None:
    """Raise ValueError, never naming the token, unless it is empty (off) or usable."""
    if not token:
        return
    if len(token) < MIN_TOKEN:
        raise ValueError(f"--admin-token must be at least {MIN_TOKEN} characters")
    if not all("!" <= c <= "~" for c in token):
        # What a client can send in an Authorization header as it is.
        raise ValueError("--admin-token must be printable ASCII without spaces")


def _syslog_address(url: str) -> tuple[str, str, int | None]:
    """What a --syslog URL binds, spelt one way: `localhost` and `127.1` are
    127.0.0.1, `/run/./t.sock` is `/run/t.sock`."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return (parts.scheme, os.path.normpath(parts.path), None)
    host = (parts.hostname or "").lower()
    if host == "localhost":
        host = "127.0.0.1"
    with contextlib.suppress(OSError):
        host = socket.inet_ntoa(socket.inet_aton(host))
    return (parts.scheme, host, parts.port or None)


def _check_syslog(url: str) -> None:
    parts = urlsplit(url)
    try:
        ok = (parts.scheme == "udp" and parts.port is not None) or (
            parts.scheme == "unix" and bool(parts.path) and not parts.netloc
        )
    except ValueError:  # a port that is not a number, or out of range
        ok = False
    if not ok:
        raise ValueError(f"--syslog {url!r}: expected udp://HOST:PORT or unix:///PATH")


def add_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """One flag per `Config` field (or those in `only`), defaulting to None so layering works.

    Values stay text here: `Config.load` reads them with each field's parser,
    exactly as it reads the environment and the file.
    """
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of settings (env TALLYD_CONFIG)"
    )
    for name, f in FIELDS.items():
        if only is not None and name not in only:
            continue
        names = [_flag(name), *f.metadata.get("aliases", [])]
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        help_ = f"{f.metadata['help']} (env {_variable(name)}; default {default!r})"
        parse: Parser = f.metadata["parse"]
        if parse.switch:
            parser.add_argument(
                *names, dest=name, action="store_const", const=True, default=None, help=help_
            )
            continue
        action = "append" if parse.repeatable else "store"
        parser.add_argument(*names, dest=name, action=action, default=None, help=help_)
