"""SVG badges drawn exactly as shields.io's badge-maker draws them, in all five styles.

The markup is written out as strings (no element tree, no template engine) because a
badge is rendered on every request; the geometry follows badge-maker 4.1 line for line
so the goldens in tests/data/badge_goldens.json compare equal as whole documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from tallyd.badges.metrics import (
    HELVETICA_11_BOLD,
    VERDANA_10,
    VERDANA_10_BOLD,
    VERDANA_11,
    is_light,
    preferred_width,
    svg_color,
)

STYLES: Final = ("flat", "flat-square", "plastic", "for-the-badge", "social")
THEMES: Final = ("auto",)
LOGO_SIZE: Final = 14

_FONT_FAMILY: Final = "Verdana,Geneva,DejaVu Sans,sans-serif"
_SOCIAL_FONT_FAMILY: Final = "Helvetica Neue,Helvetica,Arial,sans-serif"
_SVG_OPEN: Final = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
)
# JavaScript's String.prototype.trim() set, which differs from str.strip()'s.
_JS_SPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# Characters XML 1.0 forbids; badge-maker would emit them and break the document.
_NOT_XML: Final = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
)
_ESCAPES: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
)


_MARKUP: Final = re.compile("[&<>\"']")
# Stands for the message while the pieces around it are drawn: `clean` removes it
# from every text, so no label or message contains it.
_HOLE: Final = "\x00"
# Message widths a template keeps the pieces of (a count uses a few at a time).
MAX_WIDTHS: Final = 64


def escape(text: str) -> str:
    return text.translate(_ESCAPES) if _MARKUP.search(text) else text


def num(value: float) -> str:
    """A number as JavaScript prints it (3, 3.5 — never 3.0)."""
    return str(int(value)) if value == int(value) else repr(value)


def clean(text: str) -> str:
    """Trims like badge-maker and drops characters that are not allowed in XML."""
    if not text.isprintable():
        text = text.translate(_NOT_XML)
    return text.strip(_JS_SPACE)


def _utf16_len(text: str) -> int:
    # for-the-badge spaces letters by JavaScript's .length, which counts UTF-16 units.
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@lru_cache(maxsize=256)
def _text_colors(background: str) -> tuple[str, str]:
    return ("#333", "#ccc") if is_light(background) else ("#fff", "#010101")


def _logo(logo: str | None, x: int, badge_height: int) -> str:
    """badge-maker's `<image>` for a logo (a data URL), or nothing."""
    if not logo:
        return ""
    y = num((badge_height - LOGO_SIZE) / 2)
    return (
        f'<image x="{x}" y="{y}" width="{LOGO_SIZE}" height="{LOGO_SIZE}"'
        f' xlink:href="{escape(logo)}"/>'
    )


# theme=auto: a reader in dark mode gets a darker label side (only where it is
# badge-maker's default grey; a chosen label colour is kept) and, for the white social
# style, dark boxes with light text. Without a theme nothing is added.
_DARK_CLASSIC: Final = (
    "<style>@media (prefers-color-scheme: dark)"
    '{g>rect:first-child:not(:last-child)[fill="#555"]{fill:#30363d}}</style>'
)
_DARK_SOCIAL: Final = (
    "<style>@media (prefers-color-scheme: dark)"
    "{#llink,rect{fill:#21262d}path{fill:#21262d;stroke:#3d444d}"
    'rect[stroke="#fafafa"]{stroke:#21262d}text{fill:#e6edf3}'
    "text[aria-hidden]{fill-opacity:0}}</style>"
)


def _theme_head(style: str, theme: str | None) -> str:
    if theme is None:
        return ""
    if theme not in THEMES:
        raise ValueError(f"unknown badge theme {theme!r}; expected one of {', '.join(THEMES)}")
    return _DARK_SOCIAL if style == "social" else _DARK_CLASSIC


def _svg(width: float, height: int, accessible: str, body: str) -> str:
    label = escape(accessible)
    return (
        f'{_SVG_OPEN} width="{num(width)}" height="{height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>{body}</svg>"
    )


class _TextStyle:
    """The fixed parts of a text and its shadow on one background, in one style."""

    def __init__(self, background: str, y: int, shadow: bool) -> None:
        fill, shadow_fill = _text_colors(background)
        self.shadow_mid = (
            f'" y="{y + 10}" fill="{shadow_fill}" fill-opacity=".3" transform="scale(.1)"'
            ' textLength="'
            if shadow
            else ""
        )
        self.text_mid = f'" y="{y}" transform="scale(.1)" fill="{fill}" textLength="'

    def text(self, margin: int, width: int, content: str) -> str:
        """A label or message (escaped) of flat, flat-square or plastic."""
        # 10 * (margin + width / 2 + 5) with an odd width: always a whole number.
        x = 10 * margin + 5 * width + 50
        length = 10 * width
        out = f'<text x="{x}{self.text_mid}{length}">{content}</text>'
        if self.shadow_mid:
            out = f'<text aria-hidden="true" x="{x}{self.shadow_mid}{length}">{content}</text>{out}'
        return out


class _Classic:
    """flat, flat-square and plastic for one label and colours: all but the message.

    Badges of one id differ only in their count, so everything that depends on the
    label and colours is computed once, in `__init__`, and kept by `_template`.
    """

    def __init__(
        self,
        style: str,
        label: str,
        color: str | None,
        label_color: str | None,
        logo: str | None = None,
        head: str = "",
    ) -> None:
        self.height, self.y, shadow = {
            "flat": (20, 140, True),
            "flat-square": (20, 140, False),
        }.get(style, (18, 130, True))
        self.style = style
        right_color = color or "#4c1"
        has_label = bool(label) or label_color is not None
        left_color = (label_color or "#555") if has_label or logo else right_color
        label_width = preferred_width(label, VERDANA_11) if label else 0
        # A logo takes its width and a gap before the label (no gap without a label).
        logo_width = (LOGO_SIZE + (3 if label else 0)) if logo else 0
        self.left = label_width + 10 + logo_width if has_label else 0
        self.label_text = (
            _TextStyle(left_color, self.y, shadow).text(1 + logo_width, label_width, escape(label))
            if label
            else ""
        )
        self.left_rect = (
            f'<rect width="{self.left}" height="{self.height}" fill="{escape(left_color)}"/>'
        )
        self.right_fill = escape(right_color)
        self.rx = 3 if style == "flat" else 4
        self.stops = (
            '<stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
            '<stop offset="1" stop-opacity=".1"/>'
            if style == "flat"
            else '<stop offset="0" stop-color="#fff" stop-opacity=".7"/>'
            '<stop offset=".1" stop-color="#aaa" stop-opacity=".1"/>'
            '<stop offset=".9" stop-color="#000" stop-opacity=".3"/>'
            '<stop offset="1" stop-color="#000" stop-opacity=".5"/>'
        )
        self.foreground = (
            f'<g fill="#fff" text-anchor="middle" font-family="{_FONT_FAMILY}"'
            f' text-rendering="geometricPrecision" font-size="110">'
            f"{_logo(logo, 5, self.height)}{self.label_text}"
        )
        self.head = head
        self.gradient = f'<linearGradient id="s" x2="0" y2="100%">{self.stops}</linearGradient>'
        # Without a label, the message moves right of the logo, or by one pixel.
        self.unlabelled = 0 if has_label else (logo_width + 5 if logo else 1)
        self.extra_right = logo_width + 4 if logo and not has_label else 0
        self.aria_prefix = f"{escape(label)}: " if label else ""
        self.message_style = _TextStyle(right_color, self.y, shadow)
        self._pieces: dict[int, list[bytes]] = {}

    def __call__(self, message: str) -> bytes:
        # The hot path of every badge view. Everything but the message's text depends
        # only on its width, which a count keeps for many views (digits are equally
        # wide): the SVG around the text is kept per width, as the bytes to join with
        # it (joining bytes, not text then encoding it, saves a copy and a fifth of
        # the time).
        message = clean(message)
        message_width = preferred_width(message, VERDANA_11)
        key = message_width if message else 0
        pieces = self._pieces.get(key)
        if pieces is None:
            if len(self._pieces) >= MAX_WIDTHS:
                self._pieces.clear()
            drawn = self._draw(message_width, _HOLE, bool(message))
            pieces = [piece.encode() for piece in drawn.split(_HOLE)]
            self._pieces[key] = pieces
        return escape(message).encode().join(pieces)

    def _draw(self, message_width: int, content: str, has_message: bool) -> str:
        """The badge for an escaped message of this width."""
        height, left = self.height, self.left
        right = message_width + 10 + self.extra_right
        width = left + right
        rects = (
            f'{self.left_rect}<rect x="{left}" width="{right}" height="{height}"'
            f' fill="{self.right_fill}"/>'
        )
        if self.style == "flat-square":
            background = f'<g shape-rendering="crispEdges">{rects}</g>'
        else:
            background = (
                f'{self.gradient}<clipPath id="r"><rect width="{width}" height="{height}"'
                f' rx="{self.rx}" fill="#fff"/></clipPath><g clip-path="url(#r)">{rects}'
                f'<rect width="{width}" height="{height}" fill="url(#s)"/></g>'
            )
        margin = left - 1 + self.unlabelled
        text = self.message_style.text(margin, message_width, content) if has_message else ""
        aria = self.aria_prefix + content
        return (
            f'{_SVG_OPEN} width="{width}" height="{height}" role="img" aria-label="{aria}">'
            f"<title>{aria}</title>{self.head}{background}{self.foreground}{text}</g></svg>"
        )


def _for_the_badge(
    label: str,
    message: str,
    color: str | None,
    label_color: str | None,
    logo: str | None = None,
    head: str = "",
) -> str:
    label = label.upper()
    message = message.upper()
    right_color = color or "#4c1"
    left_color = label_color or "#555"
    label_width = int(VERDANA_10.width(label)) + 1.25 * _utf16_len(label) if label else 0
    message_width = (
        int(VERDANA_10_BOLD.width(message)) + 1.25 * _utf16_len(message) if message else 0
    )
    fill, _ = _text_colors(right_color)
    # The logo sits 9 px in, 6 px before the label; a chosen label colour keeps a
    # label box around a logo even without a label.
    label_x = 9 + LOGO_SIZE + 6 if logo else 12
    label_box = bool(label) or (bool(logo) and label_color is not None)
    label_text = ""
    if label:
        label_fill, _ = _text_colors(left_color)
        label_text = (
            f'<text transform="scale(.1)" x="{num(10 * (label_x + 0.5 * label_width))}"'
            f' y="175" textLength="{num(10 * label_width)}" fill="{label_fill}">'
            f"{escape(label)}</text>"
        )
    right: float = 2 * 12 + message_width
    if label_box:
        left: float = label_x + label_width + 12 if label else 2 * 9 + LOGO_SIZE
        message_x = left + 12
    else:
        left = 0
        message_x = 12 + (LOGO_SIZE + 6 if logo else 0)
        right += message_x - 12
    rect = f'width="{num(right)}" height="28" fill="{escape(right_color)}"/>'
    background = (
        f'<rect width="{num(left)}" height="28" fill="{escape(left_color)}"/>'
        f'<rect x="{num(left)}" {rect}'
        if label_box
        else f"<rect {rect}"
    )
    message_text = (
        f'<text transform="scale(.1)" x="{num(10 * (message_x + 0.5 * message_width))}"'
        f' y="175" textLength="{num(10 * message_width)}" fill="{fill}"'
        f' font-weight="bold">{escape(message)}</text>'
    )
    body = (
        f'{head}<g shape-rendering="crispEdges">{background}</g>'
        f'<g fill="#fff" text-anchor="middle" font-family="{_FONT_FAMILY}"'
        f' text-rendering="geometricPrecision" font-size="100">'
        f"{_logo(logo, 9, 28)}{label_text}{message_text}</g>"
    )
    accessible = f"{label}: {message}" if label else message
    return _svg(left + right, 28, accessible, body)


_SOCIAL_HEAD: Final = (
    "<style>a:hover #llink{fill:url(#b);stroke:#ccc}a:hover #rlink{fill:#4183c4}</style>"
    '<linearGradient id="a" x2="0" y2="100%"><stop offset="0" stop-color="#fcfcfc"'
    ' stop-opacity="0"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
    '<linearGradient id="b" x2="0" y2="100%"><stop offset="0" stop-color="#ccc"'
    ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
)


def _social_texts(x: float, width: int, content: str, text_id: str) -> str:
    x_attr = num(x)
    return (
        f'<text aria-hidden="true" x="{x_attr}" y="150" fill="#fff" transform="scale(.1)"'
        f' textLength="{10 * width}">{content}</text>'
        f'<text{text_id} x="{x_attr}" y="140" transform="scale(.1)"'
        f' textLength="{10 * width}">{content}</text>'
    )


def _social(label: str, message: str, logo: str | None = None, head: str = "") -> str:
    label = label[:1].upper() + label[1:]
    label_width = preferred_width(label, HELVETICA_11_BOLD)
    message_width = preferred_width(message, HELVETICA_11_BOLD)
    logo_width = (LOGO_SIZE + (3 if label else 0)) if logo else 0
    left = label_width + 10 + logo_width
    right = message_width + 8
    bubble = ""
    message_text = ""
    if message:
        main_x = num(left + 6 + 0.5)
        bubble = (
            f'<rect x="{main_x}" y="0.5" width="{right}" height="19" rx="2" fill="#fafafa"/>'
            f'<rect x="{left + 6}" y="7.5" width="0.5" height="5" stroke="#fafafa"/>'
            f'<path d="M{main_x} 6.5 l-3 3v1 l3 3" stroke="d5d5d5" fill="#fafafa"/>'
        )
        message_text = _social_texts(
            10 * (left + 6 + right / 2), message_width, escape(message), ' id="rlink"'
        )
    body = (
        f'{head}{_SOCIAL_HEAD}<g stroke="#d5d5d5"><rect stroke="none" fill="#fcfcfc" x="0.5"'
        f' y="0.5" width="{left}" height="19" rx="2"/>{bubble}</g>{_logo(logo, 5, 20)}'
        f'<g aria-hidden="true" fill="#333" text-anchor="middle"'
        f' font-family="{_SOCIAL_FONT_FAMILY}" text-rendering="geometricPrecision"'
        f' font-weight="700" font-size="110px" line-height="14px">'
        f'<rect id="llink" stroke="#d5d5d5" fill="url(#a)" x=".5" y=".5" width="{left}"'
        f' height="19" rx="2"/>'
        f"{_social_texts(10 * (logo_width + label_width / 2 + 5), label_width, escape(label), '')}"
        f"{message_text}</g>"
    )
    accessible = f"{label}: {message}" if label else message
    return _svg(left + 1 + (6 + right if message else 0), 20, accessible, body)


def template(
    style: str,
    label: str,
    color: str | None = None,
    label_color: str | None = None,
    logo: str | None = None,
    theme: str | None = None,
) -> Callable[[str], bytes]:
    """The badge for one style, label, colours, logo (a data URL) and theme, as a
    function of its message giving the SVG document's bytes (UTF-8).

    Colours that are not colours fall back to the defaults, as in badge-maker.
    """
    return _template(style, label, color, label_color, logo, theme)


@lru_cache(maxsize=1024)
def _template(
    style: str,
    label: str,
    color: str | None,
    label_color: str | None,
    logo: str | None,
    theme: str | None,
) -> Callable[[str], bytes]:
    label, c, lc = clean(label), svg_color(color), svg_color(label_color)
    head = _theme_head(style, theme)
    if style in ("flat", "flat-square", "plastic"):
        return _Classic(style, label, c, lc, logo, head)
    if style == "for-the-badge":
        return lambda message: _for_the_badge(label, clean(message), c, lc, logo, head).encode()
    if style == "social":
        return lambda message: _social(label, clean(message), logo, head).encode()
    raise ValueError(f"unknown badge style {style!r}; expected one of {', '.join(STYLES)}")


def render(
    label: str,
    message: str,
    style: str = "flat",
    color: str | None = None,
    label_color: str | None = None,
    logo: str | None = None,
    theme: str | None = None,
) -> str:
    """The SVG badge-maker makes for these texts, colours and logo (names, hex or CSS);
    `theme="auto"` adds a dark-mode style sheet."""
    return _template(style, label, color, label_color, logo, theme)(message).decode()
