"""Accepting connections, and surviving the moment the process runs out of descriptors.

uvloop's own server closes its listening socket for good when `accept` fails with
EMFILE (uvloop/handles/streamserver.pyx: an error status in the listen callback is
a fatal error of the server), so one burst past the descriptor limit would leave
tallyd up but deaf. This accept loop keeps one descriptor in reserve, opened on
/dev/null: out of descriptors, it asks the server to shed idle connections, logs
one line a second at most, and spends the reserve to accept and close the waiting
connection, so the listener keeps draining its backlog and recovers as soon as
descriptors are free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger("tallyd.http")

# Connections taken per wake-up of the listener, so a flood cannot starve the loop
# nor hold an honest request long: an accept and its connection cost 30-50 µs (a
# batch of 64 held a request about 2 ms). Out of descriptors, smaller batches drain
# the backlog too slowly: a new honest connection among 1,100 slow ones was served
# 88-93% of the time with batches of 4, 94-100% with 8 or 16.
ACCEPT_BATCH: Final = 8
OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# An accepted socket's protocol: not yet made, or made (or failed).
STARTING: Final = 0
SETTLED: Final = 1
# Seconds the listener rests when even the reserve descriptor could not be reopened.
RETRY_DELAY: Final = 0.1


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
    return soft


def _spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class Listener:
    """Accepts on `sock`; `factory(made)` makes a protocol whose connection_made calls
    `made()`; `refusal(starting)` gives the bytes to answer a connection turned away
    (too many open, counting the `starting` ones accepted whose connection_made has
    not run yet) or None to take it; `shed()` closes idle connections."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[Callable[[], None]], asyncio.Protocol],
        refusal: Callable[[int], bytes | None],
        shed: Callable[[], int],
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.refusal = refusal
        self.shed = shed
        self.loop = asyncio.get_running_loop()
        self.pending: set[asyncio.Task[object]] = set()
        self.starting = 0  # accepted sockets whose connection_made has not run yet
        # uvloop runs a batch's connection_made calls after the batch's accepts, and
        # ends their tasks a turn later still: neither count alone sees a burst.
        self.spare = _spare()
        self.warned: dict[str, float] = {}  # kind of warning -> when last logged
        self.refused = 0  # accepts that failed for lack of descriptors
        self.busy = 0  # connections turned away at the cap
        self.retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close the listening socket: connections not yet taken
        are refused, not left waiting in the backlog while the server stops."""
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self.retry is not None:
            self.retry.cancel()
        for task in self.pending:
            task.cancel()
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # the client gave up before we took it
                log.warning("accept failed: %s", exc)
                return
            answer = self.refusal(self.starting)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.setblocking(False)
                    conn.send(answer)
                conn.close()
                self._turned_away()
                continue
            state = [STARTING]
            self.starting += 1
            task: asyncio.Task[object] = self.loop.create_task(
                self.loop.connect_accepted_socket(
                    functools.partial(self.factory, functools.partial(self._settle, state)), conn
                )
            )
            self.pending.add(task)
            task.add_done_callback(functools.partial(self._connected, conn, state))

    def _settle(self, state: list[int]) -> None:
        # Called by the protocol's connection_made (from then on the server counts
        # it), or when the task ends without one; whichever comes first.
        if state[0] == STARTING:
            state[0] = SETTLED
            self.starting -= 1

    def _connected(self, conn: socket.socket, state: list[int], task: asyncio.Task[object]) -> None:
        self.pending.discard(task)
        self._settle(state)
        if task.cancelled() or task.exception() is not None:
            conn.close()

    def _turned_away(self) -> None:
        # Refused at the cap before a request was read: one line a second at most,
        # with how many, as for the lack of descriptors below.
        self.busy += 1
        self._warn(
            "busy",
            "too many connections open (--max-connections): answered 503 and "
            "closed a new one (%d refused so far)",
            self.busy,
        )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """Log a warning of this kind at most once a second."""
        now = time.monotonic()
        if now - self.warned.get(kind, 0.0) >= 1.0:
            self.warned[kind] = now
            log.warning(message, *args)

    def _out_of_descriptors(self, exc: OSError) -> None:
        self.refused += 1
        shed = self.shed()
        self._warn(
            "descriptors",
            "out of file descriptors (%s): closed %d idle connections, "
            "refusing new ones until descriptors free up (%d refused so far)",
            errno.errorcode.get(exc.errno or 0, exc),
            shed,
            self.refused,
        )
        if self.spare is not None:
            os.close(self.spare)
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                conn.close()
            self.spare = _spare()
        if self.spare is None:
            # Without a reserve the listener would wake at once, again and again.
            self.loop.remove_reader(self.sock.fileno())
            self.retry = self.loop.call_later(RETRY_DELAY, self._rearm)

    def _rearm(self) -> None:
        self.retry = None
        if self.spare is None:
            self.spare = _spare()
        self.loop.add_reader(self.sock.fileno(), self._accept)
