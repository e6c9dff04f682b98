"""Configuration, layered once: flags, then `TALLYD_*` variables, then a TOML file.

Every field of `Config` is a flag (`--flush-interval`), an environment variable
(`TALLYD_FLUSH_INTERVAL`) and a TOML key (`flush_interval` or `flush-interval`),
built from the one list below so the three can never drift apart.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

ENV_PREFIX = "TALLYD_"


def _opt(default: Any, help_: str, **meta: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_, **meta})
    return field(default=default, metadata={"help": help_, **meta})


@dataclass
class Config:
    store: str = _opt("sqlite:///./tallyd.db", "store URL: sqlite:///PATH or redis://HOST:PORT/DB")
    redishost: str = _opt(
        "", "the first seed's flag: HOST:PORT, the same as --store redis://HOST:PORT/0"
    )
    http: str = _opt("127.0.0.1:8080", "HTTP listen address HOST:PORT", alias="--httphost")
    zmq: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [], "connect a ZeroMQ SUB socket to ENDPOINT (repeatable)", alias="--zmsocket"
    )
    zmq_bind: list[str] = _opt([], "bind a ZeroMQ SUB socket at ENDPOINT (repeatable)")  # noqa: RUF009
    zmq_topic: list[str] = _opt([], "only take ZeroMQ messages with this topic prefix")  # noqa: RUF009
    zmq_hwm: int = _opt(100_000, "ZeroMQ receive high-water mark, in messages")
    syslog: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        [], "receive syslog at udp://HOST:PORT or unix:///PATH (repeatable)"
    )
    syslog_event: str = _opt("hit", "the event type a syslog CSV line counts as")
    timezone: str = _opt("UTC", "IANA time zone that periods are counted in")
    flush_interval: float = _opt(0.2, "seconds between batched writes to the store")
    key_prefix: str = _opt("", "prefix for every store key")
    breakdown: list[str] = _opt(  # noqa: RUF009 - _opt returns a dataclasses.field
        ["order:status"], "EVENT:PROPERTY counted per value (repeatable; 'none' for none)"
    )
    retention_minutes: int = _opt(7, "days to keep per-minute counts (0: forever)")
    retention_hours: int = _opt(400, "days to keep per-hour counts (0: forever)")
    max_body: int = _opt(1 << 20, "largest POST body in bytes")
    max_batch_cells: int = _opt(10_000, "flush early once this many distinct cells wait")
    max_pending_cells: int = _opt(2_000_000, "refuse new events (503) past this many waiting cells")
    dedup_window: float = _opt(600.0, "seconds an event id is remembered for de-duplication")
    dedup_max_ids: int = _opt(1_000_000, "most event ids remembered at once")
    badge_refresh: float = _opt(
        5.0, "seconds a badge reuses its figure before reading the store again"
    )
    unique_secret: str = _opt(
        "", "secret salting visitor hashes for metric=unique (default: random per start)"
    )
    shutdown_timeout: float = _opt(30.0, "seconds to keep retrying the final flush on stop")
    log_level: str = _opt("info", "debug, info, warning or error")

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])

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
        """Raise ValueError with a message naming the bad setting."""
        if self.redishost:
            self.store = f"redis://{self.redishost}/0"
        _, sep, port = self.http.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"--http {self.http!r}: expected HOST:PORT")
        for item in self.breakdown:
            event, sep, prop = item.partition(":")
            if item.lower() != "none" and not (sep and event and prop):
                raise ValueError(f"--breakdown {item!r}: expected EVENT:PROPERTY")
        if self.flush_interval <= 0:
            raise ValueError("--flush-interval must be positive")
        for name in (
            "max_body",
            "max_batch_cells",
            "max_pending_cells",
            "dedup_max_ids",
            "zmq_hwm",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        for name in ("retention_minutes", "retention_hours"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
        from tallyd.periods import Clock

        Clock(self.timezone)
        return self

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> Config:
        """Defaults < TOML file < environment < flags."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = path or env.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_read_toml(path))
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw, from_env=True)
        values.update({k: v for k, v in flags.items() if v is not None and k in _names()})
        return cls(**values).validate()


def _names() -> set[str]:
    return {f.name for f in fields(Config)}


def _convert(name: str, kind: Any, raw: Any, from_env: bool = False) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "list[str]":
            if isinstance(raw, list):
                return [str(x) for x in raw]
            return [x.strip() for x in str(raw).split(",") if x.strip()]
    except (TypeError, ValueError):
        where = f"{ENV_PREFIX}{name.upper()}" if from_env else name
        raise ValueError(f"{where}={raw!r}: expected {kind}") from None
    return str(raw)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path}: {exc}") from None
    kinds = {f.name: f.type for f in fields(Config)}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in kinds:
            raise ValueError(f"config file {path}: unknown setting {key!r}")
        out[name] = _convert(name, kinds[name], value)
    return out


def add_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """One flag per `Config` field (or those in `only`), defaulting to None so layering works."""
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of settings (env TALLYD_CONFIG)"
    )
    for f in fields(Config):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag] + ([f.metadata["alias"]] if "alias" in f.metadata else [])
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        help_ = f"{f.metadata['help']} (env {ENV_PREFIX}{f.name.upper()}; default {default!r})"
        kind = str(f.type)
        if kind == "list[str]":
            parser.add_argument(*names, dest=f.name, action="append", default=None, help=help_)
        else:
            conv = {"int": int, "float": float}.get(kind, str)
            parser.add_argument(*names, dest=f.name, type=conv, default=None, help=help_)
