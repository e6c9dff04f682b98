"""Distinct visitors without keeping who they are.

A visitor is a salted hash of (client address, user agent). The salt is derived from
a server secret and the day, so hashes from different days cannot be linked and the
addresses themselves never reach memory beyond the request or the store. Set
`--unique-secret` for figures that survive a restart and agree between instances;
without it a random secret is drawn at start, and a restart mid-day counts returning
visitors again.
"""

from __future__ import annotations

import hashlib
import secrets


class Visitors:
    def __init__(self, secret: str = "") -> None:
        self._secret = (
            hashlib.blake2b(secret.encode()).digest() if secret else secrets.token_bytes(32)
        )
        self._day = ""
        self._salt = b""

    def hash(self, day: str, client: str, user_agent: bytes) -> str:
        """16 hex digits for this visitor today; `day` is the local date, e.g. 2013/09/05."""
        if day != self._day:
            self._salt = hashlib.blake2b(day.encode(), key=self._secret).digest()[:32]
            self._day = day
        h = hashlib.blake2b(client.encode() + b"\n" + user_agent, key=self._salt, digest_size=8)
        return h.hexdigest()
