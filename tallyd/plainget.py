"""Reading a plain GET request in one pass, for the badge hot path.

Compiled with Cython when it is available (types in `plainget.pxd`), like
`hotpath.py`. httptools calls back into Python five times for every request and
the server then builds an ASGI scope: in-process, that was half the time of a
cached badge view. Most badge views are the plainest requests there are — GET,
a handful of headers, no body — so this reads those in one compiled pass and
returns only what a badge needs. Anything else (another method, a body, an
unusual header or character, a line that is not strictly well-formed, a request
not yet complete in the buffer) gives None, and the request goes to httptools,
which accepts or refuses it in full.
"""

from __future__ import annotations

MAX_HEAD = 8 * 1024
CR, LF, SP, HTAB, COLON, SLASH, QUESTION = 13, 10, 32, 9, 58, 47, 63
# Header names `plain_get` acts on, as `_header_kind` returns them.
H_OTHER, H_AGENT, H_FORWARDED, H_CONNECTION, H_LENGTH, H_REFUSE, H_HOST = 0, 1, 2, 3, 4, 5, 6
# What `plain_get` says of the connection, as httpd's CLOSE, KEEP and KEEP_ALIVE_1_0:
# an HTTP/1.0 request asking for keep-alive is answered with `Connection: keep-alive`.
CLOSE, KEEP, KEEP_ALIVE_1_0 = 0, 1, 2
_HEADERS = (
    (b"host", H_HOST),
    (b"user-agent", H_AGENT),
    (b"x-forwarded-for", H_FORWARDED),
    (b"connection", H_CONNECTION),
    (b"content-length", H_LENGTH),
    (b"transfer-encoding", H_REFUSE),
    (b"expect", H_REFUSE),
    (b"upgrade", H_REFUSE),
)
# Bytes allowed in a request target here: RFC 3986 pchar, "/" and "?"; a target
# with others (quotes, brackets, spaces, "#", non-ASCII) goes to httptools.
_TARGET = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
# RFC 9110 token characters, for header names.
_TOKEN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")
# Both as tables of 256 flags, for one look-up per byte.
TARGET_OK = bytes([c in _TARGET for c in range(256)])
TOKEN_OK = bytes([c in _TOKEN for c in range(256)])


def plain_get(data: bytes, start: int) -> tuple[int, bytes, bytes, bytes, bytes, int] | None:
    """(end, path, query, user agent, X-Forwarded-For, keep-alive) of the GET
    request that starts at data[start:], or None if it is not a plain one.

    Plain: `GET <target> HTTP/1.1` or `HTTP/1.0`, CRLF line ends, header names
    of token characters and values of visible ASCII, no body (a Content-Length
    of 0 at most), no Transfer-Encoding, Expect or Upgrade, each of Host,
    User-Agent, X-Forwarded-For and Connection at most once, Host present in
    HTTP/1.1, and Connection (if any) just `close` or `keep-alive`. `end` is
    where the next request starts; keep-alive is CLOSE, KEEP or KEEP_ALIVE_1_0.
    """
    n = len(data)
    i = start
    if n - i < 16 or data[i] != 71 or data[i + 1] != 69 or data[i + 2] != 84 or data[i + 3] != SP:
        return None  # not "GET "
    i += 4
    target = i
    query = -1
    while i < n and data[i] != SP:
        c = data[i]
        if not TARGET_OK[c]:
            return None
        if c == QUESTION and query < 0:
            query = i
        i += 1
    if i >= n or i == target or data[target] != SLASH:
        return None
    target_end = i
    i += 1
    if n - i < 10 or not _is(data, i, b"HTTP/1."):
        return None
    minor = data[i + 7]
    if (minor != 48 and minor != 49) or data[i + 8] != CR or data[i + 9] != LF:
        return None
    keep_alive = KEEP if minor == 49 else CLOSE
    i += 10
    agent = forwarded = b""
    seen = 0
    while True:
        if i + 1 >= n or i - start > MAX_HEAD:
            return None
        if data[i] == CR:
            if data[i + 1] != LF or (minor == 49 and not seen & (1 << H_HOST)):
                return None
            i += 2
            break
        name = i
        while i < n and data[i] != COLON:
            if not TOKEN_OK[data[i]]:
                return None
            i += 1
        if i >= n or i == name:
            return None
        kind = _header_kind(data, name, i - name)
        i += 1
        while i < n and (data[i] == SP or data[i] == HTAB):
            i += 1
        value = i
        while i < n and data[i] != CR:
            c = data[i]
            if (c < SP and c != HTAB) or c >= 127:
                return None
            i += 1
        if i + 1 >= n or data[i + 1] != LF:
            return None
        # Trailing whitespace stays, as httptools leaves it: a visitor's User-Agent
        # must hash the same whichever reader took the request.
        value_end = i
        i += 2
        if kind == H_OTHER:
            continue
        if kind == H_REFUSE or seen & (1 << kind):
            return None
        seen |= 1 << kind
        if kind == H_AGENT:
            agent = data[value:value_end]
        elif kind == H_FORWARDED:
            forwarded = data[value:value_end]
        elif kind == H_LENGTH:
            if value_end - value != 1 or data[value] != 48:
                return None  # a body: not a plain GET
        elif kind == H_HOST:
            continue
        elif _is_lower(data, value, value_end - value, b"close"):
            keep_alive = CLOSE
        elif _is_lower(data, value, value_end - value, b"keep-alive"):
            keep_alive = KEEP if minor == 49 else KEEP_ALIVE_1_0
        else:
            return None
    if query < 0:
        return i, data[target:target_end], b"", agent, forwarded, keep_alive
    return i, data[target:query], data[query + 1 : target_end], agent, forwarded, keep_alive


def _header_kind(data: bytes, at: int, size: int) -> int:
    for name, kind in _HEADERS:
        if _is_lower(data, at, size, name):
            return kind
    return H_OTHER


def _is(data: bytes, at: int, text: bytes) -> bool:
    for j in range(len(text)):  # noqa: SIM110 - compiles to a C loop; all() would be a generator
        if data[at + j] != text[j]:
            return False
    return True


def _is_lower(data: bytes, at: int, size: int, lower: bytes) -> bool:
    """data[at:at + size], in ASCII lower case, equals `lower`."""
    if size != len(lower):
        return False
    for j in range(size):
        c = data[at + j]
        if 65 <= c <= 90:
            c += 32
        if c != lower[j]:
            return False
    return True
