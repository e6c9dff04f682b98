"""The `tallyd` command: serve, query, emit, check, render-badges, export, import, config, api."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import orjson

from tallyd import __version__
from tallyd.config import Config, add_arguments
from tallyd.periods import Period
from tallyd.stats import INTERVALS, Stats
from tallyd.stores import StoreError, open_when_ready, redact

if TYPE_CHECKING:
    from tallyd.server import Parts
    from tallyd.stores.base import Transferable

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
    if cfg.worker_count > 1:
        from tallyd.workers import Supervisor

        return Supervisor(cfg, lambda c, w: int(_run(serve(c, w)))).main()
    code: int = _run(serve(cfg))
    return code


def cmd_query(args: argparse.Namespace) -> int:
    from tallyd.api import BadRange
    from tallyd.query import csv_of, render

    cfg = _config(args, AT_ONCE)
    try:
        ask = _question(args, cfg)
    except ValueError as exc:
        print(f"tallyd query: {exc}", file=sys.stderr)
        return 2

    async def query() -> dict[str, Any]:
        async with _opened(cfg) as parts:
            return await ask(parts.stats)

    try:
        answer = _run(query())
    except BadRange as exc:
        print(f"tallyd query: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"tallyd query: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.csv:
        sys.stdout.write(csv_of(answer))
    else:
        sys.stdout.write(render(answer, bars=args.bars or sys.stdout.isatty()))
    return 0


def _question(
    args: argparse.Namespace, cfg: Config
) -> Callable[[Stats], Awaitable[dict[str, Any]]]:
    """What `tallyd query` asks: a period, or a range with its interval; ValueError
    for a bad one, before the store is opened."""
    from tallyd.api import series_of, when
    from tallyd.events import check_name
    from tallyd.periods import Clock
    from tallyd.query import default_interval, is_date

    # A name ingest refuses was never counted: refused here too, by the same rule.
    account, event = check_name(args.account, "account"), check_name(args.event, "event")
    if args.start is None:
        if args.end is not None or args.interval is not None:
            raise ValueError("--to and --interval need --from")
        period = Period.from_strings(args.period)
        return lambda stats: stats.period(account, event, period)
    if args.period:
        raise ValueError("give a period (YEAR [MONTH [DAY [HOUR]]]) or --from/--to, not both")
    # Read here as series_of reads them, so a bad time is refused before the store opens.
    clock = Clock(cfg.timezone)
    start = when(args.start, clock, "from")
    if args.end is None:
        end, dates = clock.now().replace(tzinfo=None), False
    else:
        end, dates = when(args.end, clock, "to"), is_date(args.start) and is_date(args.end)
    interval = args.interval or default_interval(start, end, dates)
    return lambda stats: series_of(stats, account, event, args.start, args.end, interval)


def cmd_emit(args: argparse.Namespace) -> int:
    from tallyd.emit import run

    return run(args)


def cmd_config(args: argparse.Namespace) -> int:
    from tallyd import configdoc

    return _reference("config", configdoc.reference, configdoc.write, args.write)


def cmd_api(args: argparse.Namespace) -> int:
    from tallyd import apidoc

    return _reference("api", apidoc.reference, apidoc.write, args.write)


def _reference(
    command: str, reference: Callable[[], str], write: Callable[[str], bool], path: str | None
) -> int:
    """Print a generated reference, or put it between the markers of the file at `path`."""
    if path is None:
        sys.stdout.write(reference())
        return 0
    try:
        changed = write(path)
    except (OSError, ValueError) as exc:
        print(f"tallyd {command}: {path}: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: {'reference rewritten' if changed else 'reference up to date'}")
    return 0


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


def cmd_export(args: argparse.Namespace) -> int:
    from tallyd.records import make_filter
    from tallyd.transfer import export, missing

    cfg = _config(args, AT_ONCE)
    try:
        flt = make_filter(args.account or [], args.event or [], args.start, args.end)
        absent = missing(cfg.store)
    except ValueError as exc:
        print(f"tallyd export: {exc}", file=sys.stderr)
        return 2
    if absent:
        print(f"tallyd export: {absent}: nothing to export", file=sys.stderr)
        return 2

    async def run() -> str:
        async with _store(cfg) as store:
            with _output(args.out) as out:
                _, summary = await export(store, cfg.store, out, cfg.key_prefix, flt)
        return summary

    return _transfer("export", run)


def cmd_import(args: argparse.Namespace) -> int:
    from tallyd.seeds_import import address, import_seed
    from tallyd.transfer import checked_file, import_file

    cfg = _config(args, AT_ONCE)
    if (args.file is None) == (args.from_redis is None):
        print("tallyd import: name a FILE or --from-redis URL (one of the two)", file=sys.stderr)
        return 2
    if args.from_redis is not None and (args.layout is None or args.mode != "add"):
        print(
            "tallyd import: --from-redis needs --layout ghit|bootic-go, and adds (--mode add)",
            file=sys.stderr,
        )
        return 2
    if args.from_redis is not None:
        try:
            address(args.from_redis)
        except ValueError as exc:
            print(f"tallyd import: {exc}", file=sys.stderr)
            return 2

    async def run() -> list[str]:
        # A file is checked before the store is opened: a bad one leaves no new store.
        checked = checked_file(args.file) if args.file is not None else None
        async with _store(cfg) as store:
            if args.file is not None:
                return await import_file(
                    store, cfg.store, args.file, args.mode, args.force, cfg.key_prefix, checked
                )
            from tallyd.keys import KeySpace
            from tallyd.periods import Clock
            from tallyd.retention import Retention

            return await import_seed(
                store,
                cfg.store,
                args.from_redis,
                args.layout,
                args.event,
                KeySpace(cfg.key_prefix),
                Clock(cfg.timezone),
                Retention(cfg.retention_minutes, cfg.retention_hours),
                args.force,
            )

    return _transfer("import", run)


def _transfer(command: str, run: Any) -> int:
    """Run an export or import; every failure is one line on stderr, never a traceback."""
    from tallyd.seeds_import import SeedError
    from tallyd.transfer import BadLine, Refused

    try:
        said = _run(run())
    except KeyboardInterrupt:
        print(f"tallyd {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout's reader left (`| head`): stop quietly, as a process SIGPIPE ends
        # does, and let nothing try to flush to the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (StoreError, SeedError, BadLine, Refused) as exc:
        print(f"tallyd {command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tallyd {command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    for line in [said] if isinstance(said, str) else said:
        print(line, file=sys.stderr)
    return 0


@contextlib.asynccontextmanager
async def _store(cfg: Config) -> AsyncIterator[Transferable]:
    """The configured store alone, open (waiting up to --store-wait), then closed."""
    from tallyd.stores import open_store

    store = cast("Transferable", open_store(cfg.store, cfg.key_prefix))
    await open_when_ready(store, cfg.store_wait, redact(cfg.store))
    try:
        yield store
    finally:
        await store.close()


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """The file to export to (made anew), or stdout."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with open(path, "wb") as out:
        yield out


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

    q = sub.add_parser(
        "query",
        help="show a period's or a range's counts in the terminal",
        description="A period (by its segments) or, with --from, a range (by --interval) "
        "as a bar chart on a terminal, as a plain table otherwise.",
    )
    q.add_argument("account")
    q.add_argument("event")
    q.add_argument("period", nargs="*", metavar="YEAR [MONTH [DAY [HOUR]]]")
    q.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="a range from this ISO 8601 date or time (2013-09-05, 2013-09-05T14:00, "
        "2013-09-05T14:00+02:00), as /api/stats/series takes it",
    )
    q.add_argument(
        "--to", dest="end", metavar="TIME", help="the range's end, included (default: now)"
    )
    q.add_argument(
        "--interval",
        help=f"one point per {', '.join(INTERVALS)}, each counting its whole interval "
        "(default: the finest giving at most 100 points; a day at the finest when both "
        "ends are days)",
    )
    shape = q.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the API's JSON answer")
    shape.add_argument("--csv", action="store_true", help="print CSV: label,count")
    shape.add_argument(
        "--bars", action="store_true", help="draw the bars when the output is not a terminal too"
    )
    add_arguments(q, {*STORE_FLAGS, "retention_minutes", "retention_hours"})
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

    x = sub.add_parser(
        "export", help="write the store's counts as JSON Lines (docs/export-import.md)"
    )
    x.add_argument("--account", action="append", help="only this account (repeatable)")
    x.add_argument("--event", action="append", help="only this event type (repeatable)")
    x.add_argument(
        "--from", dest="start", metavar="DATE", help="from this day: YYYY, YYYY-MM or YYYY-MM-DD"
    )
    x.add_argument("--to", dest="end", metavar="DATE", help="to this day, included")
    x.add_argument("--out", metavar="FILE", help="the file to write (default: stdout)")
    add_arguments(x, STORE_FLAGS)
    x.set_defaults(func=cmd_export)

    i = sub.add_parser("import", help="add or set counts from an export, or from a seed's Redis")
    i.add_argument("file", nargs="?", metavar="FILE", help="a file written by tallyd export")
    i.add_argument(
        "--mode",
        choices=("add", "set"),
        default="add",
        help="add the file's counts to the store's, or set them (default: add)",
    )
    i.add_argument(
        "--force", action="store_true", help="add a file (or seed) already added to this store"
    )
    i.add_argument("--from-redis", metavar="URL", help="a seed's Redis, redis://HOST:PORT/DB")
    i.add_argument("--layout", choices=("ghit", "bootic-go"), help="the seed's key layout")
    i.add_argument("--event", default="hit", help="the event of ghit's hits (default: hit)")
    add_arguments(i, {*STORE_FLAGS, "retention_minutes", "retention_hours"})
    i.set_defaults(func=cmd_import)

    c = sub.add_parser("check", help="check the configuration and that the store answers")
    add_arguments(c)
    c.set_defaults(func=cmd_check)

    for name, about, what, func in (
        ("config", "every setting: flag, variable, TOML key, default", "configuration", cmd_config),
        ("api", "every HTTP route, from the OpenAPI document", "api", cmd_api),
    ):
        g = sub.add_parser(name, help=f"print the reference of {about}")
        g.add_argument(
            "--reference",
            action="store_true",
            required=True,
            help=f"the reference in Markdown (docs/{what}.md holds it)",
        )
        g.add_argument(
            "--write",
            metavar="FILE",
            help="put the reference between the markers of FILE instead of printing it",
        )
        g.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    raise SystemExit(args.func(args))
