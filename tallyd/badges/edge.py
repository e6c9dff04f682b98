"""`tallyd render-badges`: static badges for nginx to serve (the second seed's edge mode).

nginx answers `/badge.svg?repo=ID` from `DIR/<escaped id>.svg` and logs each hit to
tallyd over syslog; this command keeps those files up to date from the store. A file
is written only when its badge changed, and atomically (a temporary file renamed over
it), so nginx never serves half a badge. Names are the id percent-escaped like store
keys (`owner/name` → `owner%2Fname.svg`), so no id can name a path outside DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlencode

from tallyd.badges.counts import DEPTH
from tallyd.badges.params import BadgeParams, parse_params
from tallyd.badges.render import template
from tallyd.keys import escape
from tallyd.stats import Stats
from tallyd.stores import StoreError
from tallyd.web import HTTPError

log = logging.getLogger("tallyd.edge")

PAGE = 1000
OPTIONS = ("label", "color", "label_color", "style", "metric", "format", "base", "event")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="directory nginx serves badges from")
    p.add_argument(
        "--every", type=_seconds, help="render again every N seconds (5s, 1m; default: once)"
    )
    for name in OPTIONS:
        flag = "--" + name.replace("_", "-")
        # Windows and zones are read per badge view, not rendered ahead.
        choices = tuple(DEPTH) if name == "metric" else None
        p.add_argument(flag, choices=choices, help=f"badge {name}, as the URL parameter")


def _seconds(text: str) -> float:
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 5s or 1m") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the interval must be positive")
    return value


def params_of(args: argparse.Namespace) -> BadgeParams:
    """The badge options, validated exactly as the HTTP endpoint validates them."""
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    try:
        params, _ = parse_params(urlencode(given).encode())
    except HTTPError as err:
        raise ValueError(err.detail) from None
    return params


class Renderer:
    def __init__(self, stats: Stats, out: Path, params: BadgeParams) -> None:
        self.stats = stats
        self.out = out
        self.params = params
        self.draw = template(params.style, params.label, params.color, params.label_color)
        self.written: dict[str, bytes] = {}

    async def accounts(self) -> list[str]:
        """Every id with this event, from the store's index."""
        key = self.stats.keys.accounts(escape(self.params.event))
        found: list[str] = []
        after = ""
        while True:
            page = await self.stats.store.members(key, "", after, PAGE)
            found.extend(page)
            if len(page) < PAGE:
                return [unquote(a) for a in found]
            after = page[-1]

    async def figures(self, accounts: list[str]) -> list[int]:
        p = self.params
        parts = self.stats.clock.parts(int(time.time() // 60))[: DEPTH[p.metric]]
        ev = escape(p.event)
        if p.metric == "unique":
            keys = [self.stats.keys.unique(escape(a), ev, parts) for a in accounts]
            return [await self.stats.store.unique(k) for k in keys]
        counts: list[int] = []
        for i in range(0, len(accounts), PAGE):
            chunk = accounts[i : i + PAGE]
            counts.extend(await self.stats.totals([(a, p.event, parts) for a in chunk]))
        return counts

    async def once(self) -> tuple[int, int]:
        """Render every badge; returns (badges, files written)."""
        self.out.mkdir(parents=True, exist_ok=True)
        accounts = await self.accounts()
        changed = 0
        for account, count in zip(accounts, await self.figures(accounts), strict=True):
            svg = self.draw(self.params.message(count))
            name = escape(account) + ".svg"
            if self.written.get(name) != svg and self._write(name, svg):
                changed += 1
            self.written[name] = svg
        return len(accounts), changed

    def _write(self, name: str, svg: bytes) -> bool:
        path = self.out / name
        if name not in self.written and path.exists() and path.read_bytes() == svg:
            return False
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(svg)
        os.replace(tmp, path)
        return True


async def run(stats: Stats, out: Path, params: BadgeParams, every: float | None) -> None:
    """Render once, or every `every` seconds until stopped (a failed round is retried)."""
    renderer = Renderer(stats, out, params)
    if out.is_dir():
        # Left by a run that was killed while writing; never a badge nginx serves.
        for stale in out.glob(".*.svg.*.tmp"):
            stale.unlink(missing_ok=True)
    while True:
        started = time.monotonic()
        try:
            badges, changed = await renderer.once()
            log.info("%d badges, %d written to %s", badges, changed, out)
        except StoreError as exc:
            if every is None:
                raise
            log.error("store unavailable, badges left as they are: %s", exc)
        if every is None:
            return
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))
