"""The plain-GET reader agrees with httptools on every request it takes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

import tallyd.plainget as compiled


def pure() -> ModuleType:
    source = Path(compiled.__file__).with_name("plainget.py")
    spec = importlib.util.spec_from_file_location("plainget_pure", source)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PURE = pure()


def test_compiled() -> None:
    assert compiled.__file__.endswith(".so"), compiled.__file__


class _Seen:
    """httptools' view of a buffer: each complete request and where it ended."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.parser: Any = None
        self.method = b""
        self.keep_alive = False

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        # As the server reads them: during the callback, before the parser moves on.
        self.method = self.parser.get_method()
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.requests.append(
            {
                "url": self.url,
                "headers": self.headers,
                "method": self.method,
                "keep": self.keep_alive,
            }
        )


def httptools_reads(data: bytes) -> tuple[int, dict[str, Any], bool] | None:
    """(bytes of the first request, what it saw, keep-alive) by httptools, or None."""
    seen = _Seen()
    parser = seen.parser = httptools.HttpRequestParser(seen)
    # Byte by byte, so the end of the first request is known exactly.
    for i in range(len(data)):
        try:
            parser.feed_data(data[i : i + 1])
        except httptools.HttpParserError:
            return None
        if seen.requests:
            first = seen.requests[0]
            return (i + 1, first, first["keep"]) if first["method"] == b"GET" else None
    return None


PLAIN_NAMES = ["Host", "User-Agent", "user-agent", "X-Forwarded-For", "Accept", "X-Odd_Name!"]
OTHER_NAMES = [
    "Connection",
    "connection",
    "Content-Length",
    "Transfer-Encoding",
    "Expect",
    "Upgrade",
]
visible = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
values = visible | st.sampled_from(["close", "Keep-Alive", "keep-alive, Upgrade", "0", "12"])
safe = "abc/?=&%.-_~:@!$'()*+,;"
targets = st.text(safe + '#"<> \\^`{|}', max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Plain GETs, or requests of every other kind; either sometimes damaged."""
    if draw(st.booleans()):
        method, version, names, target = "GET", "HTTP/1.1", PLAIN_NAMES, st.text(safe, max_size=20)
        if draw(st.booleans()):
            version = "HTTP/1.0"
    else:
        method = draw(st.sampled_from(["GET", "HEAD", "POST", "get"]))
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"]))
        names, target = PLAIN_NAMES + OTHER_NAMES, targets
    head = f"{method} /badge/{draw(target)} {version}\r\n"
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(names))
        space = draw(st.sampled_from(["", " ", "  ", "\t"]))
        head += f"{name}:{space}{draw(values)}{draw(st.sampled_from(['', ' ']))}\r\n"
    data = (head + "\r\n").encode("latin-1")
    if draw(st.integers(0, 3)) == 0:
        # Damage: a byte replaced, or the request cut short.
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data = data[:at]
        else:
            byte = draw(st.sampled_from(b"\r\n :\x00\x7f\xe9\t"))
            data = data[:at] + bytes([byte]) + data[at + 1 :]
    return data + draw(st.sampled_from([b"", b"GET /next HTTP/1.1\r\n\r\n"]))


@settings(max_examples=1500, deadline=None)
@given(requests(), st.sampled_from([b"", b"GET /x HTTP/1.1\r\n\r\n"]))
def test_agrees_with_httptools(data: bytes, before: bytes) -> None:
    got = compiled.plain_get(before + data, len(before))
    assert got == PURE.plain_get(before + data, len(before))
    if got is None:
        return
    seen = httptools_reads(data)
    assert seen is not None, data
    size, request, keep = seen
    end, path, query, agent, forwarded, keep_alive = got
    assert end - len(before) == size
    url = httptools.parse_url(request["url"])
    assert (path, query) == (url.path, url.query or b"")
    headers = dict(request["headers"])
    assert agent == headers.get(b"user-agent", b"")
    assert forwarded == headers.get(b"x-forwarded-for", b"")
    assert bool(keep_alive) == keep


def test_takes_only_plain_gets() -> None:
    plain = b"GET /badge/a.svg?style=flat HTTP/1.1\r\nHost: x\r\nUser-Agent: ua 1\r\n\r\n"
    assert compiled.plain_get(plain, 0) == (
        len(plain),
        b"/badge/a.svg",
        b"style=flat",
        b"ua 1",
        b"",
        True,
    )
    for data in [
        plain[:-1],  # not complete yet
        plain.replace(b"GET", b"HEAD"),
        plain.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nab"),
        plain.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
        plain.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"),
        plain.replace(b"\r\n\r\n", b"\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
        plain.replace(b"\r\n\r\n", b"\r\nUser-Agent: twice\r\n\r\n"),
        plain.replace(b"Host: x\r\n", b"Host: x\n"),  # a bare LF
        plain.replace(b"Host: x\r\n", b"Host: x\r\n folded\r\n"),
        plain.replace(b"ua 1", "é".encode()),
        plain.replace(b"a.svg", b"a b.svg"),
        plain.replace(b"HTTP/1.1", b"HTTP/2.0"),
        plain.replace(b"Host: x\r\n", b""),  # HTTP/1.1 without Host: refused by httptools' path
        plain.replace(b"Host: x\r\n", b"Host: x\r\nHost: y\r\n"),
    ]:
        assert compiled.plain_get(data, 0) is None, data
    closing = plain.replace(b"\r\n\r\n", b"\r\nConnection: Close\r\n\r\n")
    assert compiled.plain_get(closing, 0)[-1] == PURE.CLOSE  # type: ignore[index]
    old = plain.replace(b"HTTP/1.1", b"HTTP/1.0")
    assert compiled.plain_get(old, 0)[-1] == PURE.CLOSE  # type: ignore[index]
    old_kept = old.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n")
    assert compiled.plain_get(old_kept, 0)[-1] == PURE.KEEP_ALIVE_1_0  # type: ignore[index]
    assert compiled.plain_get(old.replace(b"Host: x\r\n", b""), 0) is not None
