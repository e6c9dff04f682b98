"""Store backends, chosen by the URL's scheme."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from importlib import import_module
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from tallyd.stores.base import Batch, Snapshot, Store, StoreError, StoreUnusable

__all__ = [
    "FORMS",
    "SCHEMES",
    "Batch",
    "Snapshot",
    "Store",
    "StoreError",
    "check_url",
    "open_store",
    "open_when_ready",
    "redact",
]

log = logging.getLogger("tallyd.store")


class Backend(NamedTuple):
    target: str  # "module:Class", imported only when used
    forms: str  # the URL forms it takes, for --help and error messages


SCHEMES: dict[str, Backend] = {
    "sqlite": Backend(
        "tallyd.stores.sqlite:SQLiteStore",
        "sqlite:///RELATIVE/PATH.db (to the working directory), sqlite:////ABSOLUTE/PATH.db",
    ),
    "redis": Backend("tallyd.stores.redis:RedisStore", "redis://[:PASSWORD@]HOST:PORT[/DB]"),
    "redis+cluster": Backend(
        "tallyd.stores.redis_cluster:RedisClusterStore",
        "redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]",
    ),
}
FORMS = ", ".join(b.forms for b in SCHEMES.values())

# Back-off between attempts at opening a store that is not ready yet.
FIRST_RETRY = 0.25
# The shortest time one attempt to open gets; with no wait (`tallyd check`), its time.
ATTEMPT_FLOOR = 0.5
ONE_ATTEMPT = 5.0
LONGEST_RETRY = 2.0


def redact(url: str) -> str:
    """A store URL without its password, for logs, messages and /healthz."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# host:port (or [v6]:port), and absolute paths: what an error must not tell a client.
_INTERNAL = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[\w.-]+):\d{1,5}\b|(?<![\w.])/[^\s:;,)'\"]+")


def public_error(text: str) -> str:
    """A store's error as a client may read it (in a 503, in /healthz): the same
    words, with the addresses and file paths it names left out (logs keep them)."""
    return _INTERNAL.sub("…", text)


def kind(url: str) -> str:
    """The kind of store a URL names (`sqlite`, `redis`, `redis+cluster`), for clients."""
    return urlsplit(url).scheme


def _bad(url: str, why: object) -> ValueError:
    return ValueError(f"store {redact(url)!r}: {why}; accepted: {FORMS}")


def _backend(url: str) -> Any:
    backend = SCHEMES.get(urlsplit(url).scheme)
    if backend is None:
        raise _bad(url, "unknown scheme")
    module, _, name = backend.target.partition(":")
    return getattr(import_module(module), name)


def check_url(url: str) -> None:
    """Raise ValueError (one line, naming the accepted forms) unless `url` names a store."""
    cls = _backend(url)
    try:
        cls.check_url(url)
    except ValueError as exc:
        raise _bad(url, exc) from None


def open_store(url: str, key_prefix: str = "") -> Store:
    """Build (not yet open) the store a URL names; `key_prefix` prefixes its own keys too."""
    check_url(url)
    store: Store = _backend(url)(url, key_prefix)
    return store


async def open_when_ready(store: Store, wait: float, name: str) -> None:
    """Open `store`, retrying with back-off for up to `wait` seconds (0: try once).

    A store can be late at start-up (a Redis still loading, a Cluster still
    forming): each failed attempt that will be retried is one log line; the
    StoreError raised at the end is one line too, naming the last cause.
    """
    started = time.monotonic()
    deadline = started + wait
    delay = FIRST_RETRY
    attempt = 0
    while True:
        attempt += 1
        # A store that takes the connection but never answers must not outlast the
        # wait either: each attempt has what is left of it (at least ATTEMPT_FLOOR).
        limit = max(deadline - time.monotonic(), ATTEMPT_FLOOR if wait else ONE_ATTEMPT)
        try:
            try:
                await asyncio.wait_for(store.open(), limit)
            except TimeoutError:
                raise StoreError(f"no answer within {limit:.1f} s") from None
            return
        except StoreError as exc:
            cause = " ".join(str(exc).split()).rstrip(".")
            left = deadline - time.monotonic()
            if isinstance(exc, StoreUnusable):
                raise StoreError(f"store {name} cannot be used: {cause}") from exc
            if left <= 0:
                took = time.monotonic() - started
                tries = f" ({attempt} attempts in {took:.1f} s)" if attempt > 1 else ""
                raise StoreError(f"store {name} is not reachable{tries}: {cause}") from exc
            pause = min(delay, left)
            log.warning(
                "store %s is not ready (attempt %d): %s; trying again in %.2f s (%.1f s left)",
                name,
                attempt,
                cause,
                pause,
                left,
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, LONGEST_RETRY)
