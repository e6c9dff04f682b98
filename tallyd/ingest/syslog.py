"""Syslog ingest: nginx's `access_log syslog:...` lines, one hit each (the second seed).

Listens on UDP (`udp://127.0.0.1:5140`) or a Unix datagram socket
(`unix:///run/tallyd.sock`) for RFC 3164 or RFC 5424 messages. The message is
either the seed's CSV, `"2015-12-25","benwilber%2Fbashids"` (the date, then the
percent-escaped id: one hit for that id), or a JSON event in either shape.

The seed's date has no time of day, so a CSV hit is counted at the moment it is
received: nginx sends the line as it answers the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from tallyd.events import Rejected
from tallyd.intake import Intake

log = logging.getLogger("tallyd.syslog")

SOURCE = "syslog"
RCVBUF = 8 << 20
# Linux's SO_RCVBUFFORCE; Python's socket module names it only from 3.12 on.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# RFC 3164 after the PRI: "Mmm dd hh:mm:ss host tag[pid]: message"
BSD = re.compile(rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ([^:\s]+): ?(.*)", re.S)
# RFC 5424 after the PRI: "1 timestamp host app procid msgid [sd] message"
IETF = re.compile(rb"1 \S+ \S+ (\S+) \S+ \S+ (-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)", re.S)
CSV = re.compile(rb'"(\d{4}-\d{2}-\d{2})",\s*"([^"]*)"')


def message_of(datagram: bytes) -> tuple[bytes, bytes] | None:
    """(tag, message) of a syslog datagram, or None if it is not syslog."""
    if not datagram.startswith(b"<"):
        return None
    end = datagram.find(b">", 1, 5)
    if end < 0 or not datagram[1:end].isdigit():
        return None
    rest = datagram[end + 1 :].rstrip(b"\r\n\x00")
    m = IETF.fullmatch(rest) or BSD.fullmatch(rest)
    if m is None:
        return None
    tag, msg = m.group(1), m.group(m.lastindex or 0)
    if msg.startswith(b"\xef\xbb\xbf"):  # RFC 5424's BOM before a UTF-8 message
        msg = msg[3:]
    return tag, msg


def event_of(msg: bytes, event: str) -> Any:
    """The event a message stands for, or a `Rejected` saying why not."""
    msg = msg.strip()
    if msg.startswith(b"{"):
        try:
            return orjson.loads(msg)
        except orjson.JSONDecodeError:
            return Rejected("invalid_json", "the syslog message is not JSON")
    m = CSV.fullmatch(msg)
    if m is None:
        return Rejected("bad_line", 'expected "YYYY-MM-DD","escaped id" or a JSON event')
    try:
        account = unquote(m.group(2).decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeError):
        return Rejected("bad_line", "the id is not percent-escaped UTF-8")
    return {"event": event, "account": account}


class SyslogProtocol(asyncio.DatagramProtocol):
    """Buffers datagrams and counts them once per event-loop turn."""

    def __init__(self, source: SyslogSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.source.take(data)


class SyslogSource:
    def __init__(self, intake: Intake, urls: list[str], event: str = "hit") -> None:
        self.intake = intake
        self.urls = urls
        self.event = event
        self.received = 0
        self._buffer: list[bytes] = []
        self._scheduled = False
        self._transports: list[asyncio.DatagramTransport] = []
        self._paths: list[str] = []
        intake.metrics.gauge(
            "tallyd_syslog_received", "Syslog datagrams received.", lambda: self.received
        )
        intake.metrics.gauge(
            "tallyd_syslog_kernel_drops",
            "Datagrams the kernel dropped on tallyd's UDP sockets.",
            self.kernel_drops,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for url in self.urls:
            sock = self._socket(url)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: SyslogProtocol(self), sock=sock
            )
            self._transports.append(transport)
            log.info("syslog: listening on %s", url)

    def _socket(self, url: str) -> socket.socket:
        parts = urlsplit(url)
        if parts.scheme == "udp":
            host, port = parts.hostname or "127.0.0.1", parts.port
            if port is None:
                raise ValueError(f"--syslog {url!r}: expected udp://HOST:PORT")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((host, port))
        elif parts.scheme == "unix":
            path = parts.path
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            self._paths.append(path)
        else:
            raise ValueError(f"--syslog {url!r}: expected udp://HOST:PORT or unix:///PATH")
        # nginx sends a burst per page of badges: a large buffer rides it out. The
        # kernel caps SO_RCVBUF at net.core.rmem_max; with CAP_NET_ADMIN, force it.
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
        return sock

    def take(self, datagram: bytes) -> None:
        self._buffer.append(datagram)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.count)

    def count(self) -> None:
        """Count what arrived since the last turn of the event loop."""
        batch, self._buffer = self._buffer, []
        self._scheduled = False
        self.received += len(batch)
        objs: list[Any] = []
        for datagram in batch:
            found = message_of(datagram)
            if found is None:
                objs.append(Rejected("not_syslog", "not an RFC 3164 or 5424 message"))
            else:
                objs.append(event_of(found[1], self.event))
        self.intake.count_many(objs, SOURCE)

    def kernel_drops(self) -> float:
        """Drops that /proc/net/udp reports for our UDP ports (Linux)."""
        ports = set()
        for t in self._transports:
            sock = t.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                ports.add(sock.getsockname()[1])
        total = 0
        for name in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(name) as fh:
                    next(fh)
                    for line in fh:
                        fields = line.split()
                        if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                            total += int(fields[-1])
            except (OSError, ValueError, IndexError, StopIteration):
                continue
        return float(total)

    async def stop(self) -> None:
        for t in self._transports:
            t.close()
        if self._buffer:
            self.count()
        for path in self._paths:
            if os.path.exists(path):
                os.unlink(path)
        log.info("syslog: stopped after %d datagram(s)", self.received)
