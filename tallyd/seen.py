"""Which names may have counts in the store: a Bloom filter of every name that did.

A badge's first view read the store to learn its count; for an id never seen
before that read always finds nothing, and 1,000 new ids at once queued 1,000
reads behind each other (p99 over 20 ms). This filter answers "surely not in the
store" without a read: it holds every account the store's indexes list when it is
loaded, and every name this process admits (`limits.NewNames.remember`, the one way
a name becomes countable), with its owner's rollup. A name it does not hold has no
count anywhere this process could know of, so its figures start at 0.

A Bloom filter never forgets and never misses a name it was given; past its
capacity it answers "maybe" more often, which only costs the read it saves.
What another process writes after the load (another worker, node or an import)
is not in it: such an id's first view here shows this process's own counts until
its figure is refreshed (`--badge-refresh`), as for any figure cached here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import unquote

from tallyd.keys import KeySpace
from tallyd.rules import prefix_rollup
from tallyd.stores.base import Store, StoreError

log = logging.getLogger("tallyd.badges")

# 2**24 bits (2 MiB) and 4 probes: 1 in 50 false "maybe" at 2,000,000 names.
BITS: Final = 1 << 24
PROBES: Final = 4
# Index entries read per store read while loading: adding a page holds the event
# loop about 2 ms.
PAGE: Final = 1000
# Seconds between tries when the store could not be read.
RETRY: Final = 30.0


class SeenNames:
    """Names that may have counts in the store (see the module docstring)."""

    __slots__ = ("_bits", "_loading", "names", "ready")

    def __init__(self) -> None:
        self._bits = bytearray(BITS // 8)
        self.ready = False  # loaded from the store: until then, every name is "maybe"
        self.names = 0  # names added, duplicates included
        self._loading: asyncio.Task[None] | None = None

    def add(self, name: str) -> None:
        self._set(name)
        owner = prefix_rollup(name)
        if owner is not None:
            self._set(owner)

    def _set(self, name: str) -> None:
        self.names += 1
        h = hash(name)
        step = (h >> 32) | 1
        bits = self._bits
        for _ in range(PROBES):
            i = h & (BITS - 1)
            bits[i >> 3] |= 1 << (i & 7)
            h += step

    def surely_absent(self, name: str) -> bool:
        """Whether `name` has no count in the store (as of the load) nor in this
        process; False while the filter is not loaded."""
        if not self.ready:
            return False
        h = hash(name)
        step = (h >> 32) | 1
        bits = self._bits
        for _ in range(PROBES):
            i = h & (BITS - 1)
            if not bits[i >> 3] & (1 << (i & 7)):
                return True
            h += step
        return False

    def load_soon(self, store: Store, keys: KeySpace) -> None:
        """Start loading from the store's indexes, once (on the first badge view)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load(store, keys))

    async def _load(self, store: Store, keys: KeySpace) -> None:
        while True:
            try:
                async for events in _pages(store, keys.events):
                    for event in events:
                        async for accounts in _pages(store, keys.accounts(event)):
                            for account in accounts:
                                self.add(unquote(account))
            except StoreError as exc:
                log.warning("badge ids not listed from the store (%s); again in %g s", exc, RETRY)
                await asyncio.sleep(RETRY)
                continue
            self.ready = True
            return


async def _pages(store: Store, key: str) -> AsyncIterator[list[str]]:
    """An index's members a page at a time (each page a read; the loop runs between)."""
    after = ""
    while True:
        page = await store.members(key, "", after, PAGE)
        yield page
        if len(page) < PAGE:
            return
        after = page[-1]
