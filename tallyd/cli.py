"""The `tallyd` command: serve, query, emit, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from tallyd import __version__
from tallyd.config import Config, add_arguments
from tallyd.periods import Period
from tallyd.stores import StoreError, open_when_ready, redact

if TYPE_CHECKING:
    from tallyd.server import Parts

STORE_FLAGS = {"store", "redishost", "store_wait", "timezone", "key_prefix"}
# check and query answer about now: they try the store once unless --store-wait is set.
AT_ONCE = {"store_wait": 0.0}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_serve(args: argparse.Namespace) -> int:
    from tallyd.server import serve

    cfg = _config(args)
    _setup_logging(cfg.log_level)
    code: int = _run(serve(cfg))
    return code


def cmd_query(args: argparse.Namespace) -> int:
    from tallyd.query import render

    cfg = _config(args, AT_ONCE)
    try:
        period = Period.from_strings(args.period)
    except ValueError as exc:
        print(f"tallyd query: {exc}", file=sys.stderr)
        return 2

    async def query() -> dict[str, Any]:
        async with _opened(cfg) as parts:
            return await parts.stats.period(args.account, args.event, period)

    try:
        answer = _run(query())
    except StoreError as exc:
        print(f"tallyd query: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(answer))
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    from tallyd.emit import run

    return run(args)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _config(args, AT_ONCE)

    async def check() -> None:
        async with _opened(cfg) as parts:
            await parts.store.ping()

    try:
        _run(check())
    except StoreError as exc:
        print(f"tallyd check: {exc}", file=sys.stderr)
        return 1
    print(
        f"configuration ok; store {redact(cfg.store)} reachable; "
        f"time zone {cfg.timezone}; HTTP would listen on {cfg.http}"
    )
    return 0


def cmd_render_badges(args: argparse.Namespace) -> int:
    from tallyd.badges.edge import params_of, run

    cfg = _config(args)
    _setup_logging(cfg.log_level)
    try:
        params = params_of(args)
    except ValueError as exc:
        print(f"tallyd render-badges: {exc}", file=sys.stderr)
        return 2

    async def render() -> None:
        async with _opened(cfg) as parts:
            await run(parts.stats, args.out, params, args.every)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            _run(render())
    except StoreError as exc:
        print(f"tallyd render-badges: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.asynccontextmanager
async def _opened(cfg: Config) -> AsyncIterator[Parts]:
    """The service's parts with the store open (waiting up to --store-wait), then closed."""
    from tallyd.server import assemble

    parts = assemble(cfg)
    await open_when_ready(parts.store, cfg.store_wait, redact(cfg.store))
    try:
        yield parts
    finally:
        await parts.store.close()


def _config(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> Config:
    try:
        return Config.load(vars(args), path=args.config, defaults=defaults)
    except ValueError as exc:
        print(f"tallyd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tallyd", description="A self-hosted event counter.")
    p.add_argument("--version", action="version", version=f"tallyd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the counter: ingest, store, API")
    add_arguments(s)
    s.set_defaults(func=cmd_serve)

    q = sub.add_parser("query", help="show a period's counts in the terminal")
    q.add_argument("account")
    q.add_argument("event")
    q.add_argument("period", nargs="*", metavar="YEAR [MONTH [DAY [HOUR]]]")
    q.add_argument("--json", action="store_true", help="print the API's JSON answer")
    add_arguments(q, STORE_FLAGS)
    q.set_defaults(func=cmd_query)

    e = sub.add_parser("emit", help="send test or load events to ZeroMQ or HTTP")
    from tallyd.emit import add_arguments as emit_arguments

    emit_arguments(e)
    e.set_defaults(func=cmd_emit)

    r = sub.add_parser("render-badges", help="write every badge to a directory, for nginx to serve")
    from tallyd.badges.edge import add_arguments as edge_arguments

    edge_arguments(r)
    add_arguments(r, {*STORE_FLAGS, "log_level"})
    r.set_defaults(func=cmd_render_badges)

    c = sub.add_parser("check", help="check the configuration and that the store answers")
    add_arguments(c)
    c.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    raise SystemExit(args.func(args))
