"""Badge logos: simple-icons by name, or a small custom SVG given as a data: URL.

A logo ends up as the `xlink:href` of an `<image>` in the badge, as a base64 data URL,
the way shields.io embeds one. Named icons come from the simple-icons-pack wheel
(simple-icons' SVGs and brand colours, CC0). A custom SVG is parsed and refused unless
it is plain drawing: no scripts, event handlers, external references, foreign content.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Final
from xml.parsers import expat

from simple_icons_pack import get_icon

from tallyd.badges.metrics import brightness, svg_color

DATA_PREFIX: Final = "data:image/svg+xml;base64,"
# Under the 8 KiB request-target limit once base64- and percent-encoded.
MAX_LOGO_BYTES: Final = 4 * 1024
# shields' defaults for a named logo without logoColor: a dark brand colour becomes
# whitesmoke on the grey label, and a light one #333 on the social style's white.
_LIGHT_THRESHOLD: Final = 0.4
_DARK_THRESHOLD: Final = 0.6

_SVG_NS: Final = "http://www.w3.org/2000/svg"
_XLINK_NS: Final = "http://www.w3.org/1999/xlink"
# Drawing only: no script, foreignObject, image, use of other documents, animation
# (which can rewrite an href), style sheets or links.
_ELEMENTS: Final = frozenset(
    {
        "svg", "g", "defs", "title", "desc", "metadata", "symbol", "use",
        "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
        "text", "tspan", "linearGradient", "radialGradient", "stop",
        "clipPath", "mask", "pattern", "filter", "feGaussianBlur", "feOffset",
        "feBlend", "feColorMatrix", "feFlood", "feComposite", "feMerge", "feMergeNode",
    }
)  # fmt: skip
# Any url(...) must point into the same document.
_URL: Final = re.compile(r"url\s*\(\s*['\"]?\s*([^)'\"\s]*)", re.IGNORECASE)
_UNSAFE_TEXT: Final = re.compile(r"javascript:|@import|expression\s*\(", re.IGNORECASE)


class LogoError(ValueError):
    """A logo that cannot be drawn; `unknown` for a name simple-icons does not have."""

    def __init__(self, detail: str, unknown: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unknown = unknown


@lru_cache(maxsize=256)
def named_logo(name: str, color: str | None, style: str) -> str:
    """The data URL of a simple-icons logo, coloured as shields colours it."""
    icon = get_icon(name.strip().lower().replace(" ", "-"))
    if icon is None:
        raise LogoError(f"simple-icons has no logo {name!r}", unknown=True)
    fill = svg_color(color)
    if fill is None:
        light = brightness("#" + icon.hex) or 0.0
        if style != "social" and light <= _LIGHT_THRESHOLD:
            fill = "whitesmoke"
        elif style == "social" and light >= _DARK_THRESHOLD:
            fill = "#333"
        else:
            fill = "#" + icon.hex
    svg = icon.svg.replace("<svg", f'<svg fill="{fill}"', 1)
    return DATA_PREFIX + base64.b64encode(svg.encode()).decode("ascii")


@lru_cache(maxsize=64)
def custom_logo(value: str) -> str:
    """A `data:image/svg+xml;base64,...` logo, checked; its canonical data URL."""
    # A '+' of a query string reads as a space (shields puts it back the same way).
    value = re.sub(r"\s", "", value.replace(" ", "+"))
    if not value.startswith(DATA_PREFIX):
        raise LogoError("a custom logo is a data:image/svg+xml;base64,… URL")
    encoded = value[len(DATA_PREFIX) :]
    if len(encoded) > (MAX_LOGO_BYTES + 2) // 3 * 4:
        raise LogoError(f"a custom logo is at most {MAX_LOGO_BYTES} bytes of SVG")
    try:
        svg = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise LogoError("the custom logo is not valid base64") from None
    try:
        # Shields' endpoint carries the SVG as text (`logoSvg`): UTF-8 only.
        svg.decode("utf-8")
    except UnicodeDecodeError:
        raise LogoError("the custom logo is not UTF-8 text") from None
    check_svg(svg)
    return DATA_PREFIX + base64.b64encode(svg).decode("ascii")


def logo_svg(url: str) -> str:
    """The SVG text of a logo's data URL (one made by this module)."""
    return base64.b64decode(url[len(DATA_PREFIX) :]).decode()


def check_svg(svg: bytes) -> None:
    """Raises LogoError unless `svg` is an SVG document of drawing elements only."""
    if len(svg) > MAX_LOGO_BYTES:
        raise LogoError(f"a custom logo is at most {MAX_LOGO_BYTES} bytes of SVG")
    parser = expat.ParserCreate(namespace_separator=" ")
    depth = 0

    def refuse(*_: object) -> int:
        raise LogoError("the custom logo has a DTD, entity or processing instruction")

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        ns, _, local = tag.rpartition(" ")
        if ns != _SVG_NS or local not in _ELEMENTS or (depth == 0 and local != "svg"):
            raise LogoError(f"the custom logo may not contain <{local}>")
        depth += 1
        for name, value in attrs.items():
            _check_attribute(name, value)

    def text(data: str) -> None:
        if _UNSAFE_TEXT.search(data):
            raise LogoError("the custom logo's text looks like code")

    parser.StartElementHandler = start
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ProcessingInstructionHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(svg, True)
    except expat.ExpatError as err:
        raise LogoError(f"the custom logo is not well-formed XML ({err})") from None
    if depth == 0:
        raise LogoError("the custom logo is not an SVG document")


def _check_attribute(name: str, value: str) -> None:
    ns, _, local = name.rpartition(" ")
    if local.lower().startswith("on"):
        raise LogoError(f"the custom logo may not have event handlers ({local})")
    if ns not in ("", _XLINK_NS, "http://www.w3.org/XML/1998/namespace"):
        raise LogoError("the custom logo may not have attributes of other namespaces")
    if local == "href" and not value.strip().startswith("#"):
        raise LogoError("the custom logo may not refer to other documents")
    if _UNSAFE_TEXT.search(value):
        raise LogoError("the custom logo has an attribute that looks like code")
    for target in _URL.findall(value):
        if not target.startswith("#"):
            raise LogoError("the custom logo may not refer to other documents")
