"""Store backends, chosen by the URL's scheme."""

from __future__ import annotations

from importlib import import_module
from urllib.parse import urlsplit

from tallyd.stores.base import Batch, Snapshot, Store, StoreError

__all__ = ["SCHEMES", "Batch", "Snapshot", "Store", "StoreError", "open_store"]

# scheme → "module:Class"; imported only when used.
SCHEMES: dict[str, str] = {
    "sqlite": "tallyd.stores.sqlite:SQLiteStore",
    "redis": "tallyd.stores.redis:RedisStore",
    "redis+cluster": "tallyd.stores.redis_cluster:RedisClusterStore",
}


def open_store(url: str, key_prefix: str = "") -> Store:
    """Build (not yet open) the store a URL names; `key_prefix` prefixes its own keys too."""
    scheme = urlsplit(url).scheme
    target = SCHEMES.get(scheme)
    if target is None:
        accepted = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unknown store {url!r}: the accepted schemes are {accepted}")
    module, _, name = target.partition(":")
    cls = getattr(import_module(module), name)
    store: Store = cls(url, key_prefix)
    return store
