"""The dashboard's files, shipped in the package and served from memory.

The page names each file with its content's hash (`app.js?v=…`), so a browser
keeps it for good and a new release is fetched at once; without the hash it
revalidates (ETag, 304).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from tallyd.web import HTTPError, Request, Response

IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
NOSNIFF = (b"x-content-type-options", b"nosniff")
TYPES = {"app.js": b"text/javascript; charset=utf-8", "style.css": b"text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: bytes
    version: str

    @property
    def etag(self) -> bytes:
        return f'"{self.version}"'.encode()


def text(name: str) -> str:
    """A file of this package (the page's template)."""
    return files(__package__).joinpath(name).read_text("utf-8")


def _load(name: str, content_type: bytes) -> Asset:
    body = files(__package__).joinpath(name).read_bytes()
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])


ASSETS = {name: _load(name, kind) for name, kind in TYPES.items()}


def url(name: str) -> str:
    """Where the page links a file: its name and its version."""
    return f"/dashboard/{name}?v={ASSETS[name].version}"


def serve(name: str, req: Request) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise HTTPError(404, "not_found", "no such file; the dashboard is at /")
    cache = IMMUTABLE if req.query.get("v") == asset.version else REVALIDATE
    headers = [(b"cache-control", cache), (b"etag", asset.etag), NOSNIFF]
    if req.headers.get(b"if-none-match") == asset.etag:
        return Response(304, b"", asset.content_type, headers)
    return Response(200, asset.body, asset.content_type, headers)
