"""Syslog ingest: nginx's `access_log syslog:...` lines, one hit each (the second seed).

Listens on UDP (`udp://127.0.0.1:5140`) or a Unix datagram socket
(`unix:///run/tallyd.sock`) for RFC 3164 or RFC 5424 messages. The message is
either the seed's CSV, `"2015-12-25","benwilber%2Fbashids"` (the date, then the
percent-escaped id: one hit for that id), or a JSON event in either shape.

The CSV's first column says when the hit happened:

- the seed's `YYYY-MM-DD` has no time of day, so the hit counts at the moment it
  is received (nginx sends the line as it answers the request);
- nginx's `$time_iso8601` (`2026-12-02T17:00:00+00:00`), `$time_local`
  (`02/Dec/2026:17:00:00 +0000`) or `$msec` (`1796230800.123`), and any other time
  an event's `time` may hold: the hit counts at that time.

A line in the CSV shape whose first column is none of these is rejected as
`bad_time`; a line not in the CSV shape at all (nor JSON) as `bad_line`.

A datagram without a syslog header that holds a JSON object is an event too: the
Bootic collector's producers sent each event as one bare JSON datagram. Those are
counted (and rejected) under the source `udp`, or `unix` on a Unix socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from tallyd.events import Rejected, decoded, parse_time
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
CSV = re.compile(rb'"([^"]*)",\s*"([^"]*)"')
SEED_DATE = re.compile(rb"\d{4}-\d{2}-\d{2}")
# nginx's $time_local: "02/Dec/2026:17:00:00 +0000". ASCII: a str `\d` takes any script's digits.
TIME_LOCAL = re.compile(r"(\d\d)/(\w{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", re.ASCII)
# nginx writes English month names whatever the locale.
MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}


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


def parse_time_local(value: str) -> float:
    """Unix seconds of nginx's `$time_local`, `02/Dec/2026:17:00:00 +0000`; raises
    `Rejected("bad_time")` for anything else, a day or month that does not exist, or
    an offset past ±23:59."""
    m = TIME_LOCAL.fullmatch(value)
    if m is None:
        raise Rejected("bad_time", f"time {value[:40]!r} is not dd/Mon/yyyy:HH:MM:SS ±hhmm")
    day, mon, year, hour, minute, second, sign, off_h, off_m = m.groups()
    month = MONTHS.get(mon)
    if month is None:
        raise Rejected("bad_time", f"time {value[:40]!r}: no month is called {mon!r}")
    if int(off_h) > 23 or int(off_m) > 59:
        raise Rejected("bad_time", f"time {value[:40]!r}: the offset is out of range")
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        dt = datetime(
            int(year),
            month,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
    except ValueError as err:
        raise Rejected("bad_time", f"time {value[:40]!r}: {err}") from None
    # parse_time holds the range every event time must be in.
    return parse_time(dt.timestamp())


# nginx logs the same time text for every hit in a second: parse it once.
@functools.lru_cache(maxsize=256)
def hit_time(date: bytes) -> int | None:
    """When a CSV line's hit happened, in Unix seconds; None for the seed's bare date
    (count it now). Raises `Rejected("bad_time")`."""
    if SEED_DATE.fullmatch(date):
        return None
    try:
        text = date.decode("ascii")
    except UnicodeDecodeError:
        raise Rejected("bad_time", "the time is not ASCII") from None
    t = parse_time_local(text) if "/" in text else parse_time(text)
    # Whole seconds: counts are per minute, and integer times take the fast path.
    return int(t)


def event_of(msg: bytes, event: str) -> Any:
    """The event a message stands for, or a `Rejected` saying why not."""
    msg = msg.strip()
    if msg.startswith(b"{"):
        return decoded(msg, "the message")
    m = CSV.fullmatch(msg)
    if m is None:
        return Rejected("bad_line", 'expected "time","escaped id" or a JSON event')
    try:
        account = unquote(m.group(2).decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeError):
        return Rejected("bad_line", "the id is not percent-escaped UTF-8")
    try:
        t = hit_time(m.group(1))
    except Rejected as err:
        return err.kept()
    if t is None:
        return {"event": event, "account": account}
    return {"event": event, "account": account, "time": t}


class SyslogProtocol(asyncio.DatagramProtocol):
    """Buffers one socket's datagrams and counts them once per event-loop turn."""

    def __init__(self, source: SyslogSource, bare: str) -> None:
        self.source = source
        self.bare = bare
        self.buffer: list[bytes] = []
        # Typed by what is used of it: asyncio's datagram transports pause and
        # resume reading like stream ones, though typeshed lists it only there.
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.ReadTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.buffer:
            asyncio.get_running_loop().call_soon(self.flush)
        self.buffer.append(data)

    def flush(self) -> None:
        batch, self.buffer = self.buffer, []
        if batch:
            self.source.count(batch, self.bare)
            if self.source.intake.aggregator.journal is not None and self.transport is not None:
                # With --durable, a datagram is taken (read) only once the ones before
                # it are on disk: the kernel's buffer holds the next ones meanwhile.
                self.transport.pause_reading()
                asyncio.get_running_loop().create_task(self._resume_when_durable())

    async def _resume_when_durable(self) -> None:
        try:
            await self.source.intake.aggregator.acknowledged()
        except OSError:
            await asyncio.sleep(1.0)  # the journal failed: logged by it; do not spin
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class SyslogSource:
    def __init__(
        self, intake: Intake, urls: list[str], event: str = "hit", reuse_port: bool = False
    ) -> None:
        self.intake = intake
        # Worker processes each bind the UDP ports (SO_REUSEPORT); the kernel picks
        # one socket per sender address and port.
        self.reuse_port = reuse_port
        self.urls = urls
        self.event = event
        self.received = 0
        self._protocols: list[SyslogProtocol] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._paths: list[str] = []
        intake.metrics.counter(
            "tallyd_syslog_received_total", "Syslog datagrams received.", lambda: self.received
        )
        intake.metrics.counter(
            "tallyd_syslog_kernel_drops_total",
            "Datagrams the kernel dropped on tallyd's UDP sockets.",
            self.kernel_drops,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for url in self.urls:
            sock = self._socket(url)
            make = functools.partial(SyslogProtocol, self, urlsplit(url).scheme)
            transport, protocol = await loop.create_datagram_endpoint(make, sock=sock)
            self._protocols.append(protocol)
            self._transports.append(transport)
            log.info("syslog: listening on %s", _bound(url, sock))

    def _socket(self, url: str) -> socket.socket:
        parts = urlsplit(url)
        if parts.scheme == "udp":
            sock = _udp_socket(url, self.reuse_port)
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

    def count(self, batch: list[bytes], bare: str) -> None:
        """Count datagrams that arrived together; bare JSON ones under the source `bare`."""
        self.received += len(batch)
        lines: list[Any] = []
        events: list[Any] = []
        for datagram in batch:
            found = message_of(datagram)
            if found is not None:
                lines.append(event_of(found[1], self.event))
            elif datagram.lstrip().startswith(b"{"):
                events.append(decoded(datagram, "the message"))
            else:
                lines.append(Rejected("not_syslog", "not RFC 3164 or 5424, nor a JSON event"))
        if lines:
            self.intake.count_many(lines, SOURCE)
        if events:
            self.intake.count_many(events, bare)

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
        for p in self._protocols:
            p.flush()
        for path in self._paths:
            if os.path.exists(path):
                os.unlink(path)
        log.info("syslog: stopped after %d datagram(s)", self.received)


def _udp_socket(url: str, reuse_port: bool) -> socket.socket:
    """A UDP socket bound to the address of `udp://HOST:PORT`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if port is None:
        raise ValueError(f"--syslog {url!r}: expected udp://HOST:PORT")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{url}: {exc.strerror or exc}") from None
    return sock


def _bound(url: str, sock: socket.socket) -> str:
    """The URL a socket listens on, with the port it got for port 0."""
    parts = urlsplit(url)
    if parts.scheme != "udp":
        return url
    host = parts.hostname or "127.0.0.1"
    return f"udp://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"


def claim_udp_ports(urls: list[str]) -> list[str]:
    """`urls` with each UDP port checked free, and port 0 made one free port for all
    the workers; OSError (naming the URL) when a port is bound already.

    Workers bind their syslog ports with SO_REUSEPORT, and so would another tallyd's:
    the kernel would let the two services join and split the datagrams between their
    stores. A plain bind first says the port is taken. (Unlike the HTTP port, it
    cannot be held meanwhile: a bound UDP socket gets its share of the datagrams.)
    """
    claimed = []
    for url in urls:
        if urlsplit(url).scheme == "udp":
            probe = _udp_socket(url, reuse_port=False)
            url = _bound(url, probe)
            probe.close()
        claimed.append(url)
    return claimed
