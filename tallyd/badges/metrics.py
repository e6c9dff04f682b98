"""Text widths and colours exactly as shields.io's badge-maker computes them.

The tables in `data.json` are anafanafo's per-character widths (see
`scripts/badge_data.py`); summing them in the same order as JavaScript gives the same
floating-point result, so every width, x position and textLength matches shields.
"""

from __future__ import annotations

import bisect
import json
import pathlib
import re
from functools import lru_cache
from typing import Final

_DATA = json.loads((pathlib.Path(__file__).parent / "data.json").read_text())


class Font:
    """One of anafanafo's width tables: sorted [first, last, width] code-point ranges."""

    def __init__(self, ranges: list[list[float]]) -> None:
        self._starts = [int(r[0]) for r in ranges]
        self._ends = [int(r[1]) for r in ranges]
        self._widths = [float(r[2]) for r in ranges]
        self._ascii = [self._lookup(c) for c in range(128)]
        # Characters missing from the table are guessed as wide as "m", like anafanafo.
        self.em = self._lookup(ord("m")) or 0.0
        # Each ASCII character as the first one exactly as wide (`preferred_width`).
        first: dict[float | None, str] = {}
        self.alike = str.maketrans(
            {chr(c): first.setdefault(w, chr(c)) for c, w in enumerate(self._ascii)}
        )

    def _lookup(self, code: int) -> float | None:
        if code <= 31 or code == 127:
            return 0.0
        i = bisect.bisect_right(self._starts, code) - 1
        if i >= 0 and code <= self._ends[i]:
            return self._widths[i]
        return None

    def width(self, text: str) -> float:
        total = 0.0
        ascii_widths = self._ascii
        for ch in text:
            code = ord(ch)
            w = ascii_widths[code] if code < 128 else self._lookup(code)
            total += self.em if w is None else w
        return total


FONTS: Final = {name: Font(ranges) for name, ranges in _DATA["fonts"].items()}
VERDANA_11: Final = FONTS["11px Verdana"]
VERDANA_10: Final = FONTS["10px Verdana"]
VERDANA_10_BOLD: Final = FONTS["bold 10px Verdana"]
HELVETICA_11_BOLD: Final = FONTS["bold 11px Helvetica"]


def preferred_width(text: str, font: Font) -> int:
    """The integer width shields gives a text: truncated, then rounded up to odd."""
    # A badge's count is a new text at nearly every view, but its digits are equally
    # wide: the cache is keyed by the text with every ASCII character replaced by the
    # first one as wide, so 12,345 and 12,346 are one entry (the same widths summed in
    # the same order: the same float). A miss summed the text in Python, 0.8 µs a view.
    return _preferred_width(text.translate(font.alike), font)


@lru_cache(maxsize=4096)
def _preferred_width(text: str, font: Font) -> int:
    w = int(font.width(text))
    return w + 1 if w % 2 == 0 else w


# shields' own palette and aliases; other names are CSS colour keywords.
NAMED: Final = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellow": "#dfb317",
    "yellowgreen": "#a4a61d",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "grey": "#555",
    "lightgrey": "#9f9f9f",
}
ALIASES: Final = {
    "gray": "grey",
    "lightgray": "lightgrey",
    "critical": "red",
    "important": "orange",
    "success": "brightgreen",
    "informational": "blue",
    "inactive": "lightgrey",
}
CSS_COLORS: Final[dict[str, list[int]]] = _DATA["css_colors"]

_BARE_HEX = re.compile(r"(?:[0-9a-fA-F]{3}){1,2}")
_HEX = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})?")
_SHORT_HEX = re.compile(r"#([0-9a-fA-F])([0-9a-fA-F])([0-9a-fA-F])([0-9a-fA-F])?")
_RGB = re.compile(
    r"rgba?\(\s*(\d+)\s*(?:,\s*|\s+)(\d+)\s*(?:,\s*|\s+)(\d+)"
    r"(?:\s*[,/]\s*(?:0|1|0?\.\d+|\d+%))?\s*\)"
)


def rgb_of(color: str) -> tuple[int, int, int] | None:
    """The RGB of a CSS colour (keyword, #hex, rgb()/rgba()), or None."""
    if color in CSS_COLORS:
        r, g, b = CSS_COLORS[color]
        return r, g, b
    m = _HEX.fullmatch(color)
    if m:
        return int(m[1], 16), int(m[2], 16), int(m[3], 16)
    m = _SHORT_HEX.fullmatch(color)
    if m:
        return int(m[1] * 2, 16), int(m[2] * 2, 16), int(m[3] * 2, 16)
    m = _RGB.fullmatch(color)
    if m:
        r, g, b = (max(0, min(int(v), 255)) for v in m.group(1, 2, 3))
        return r, g, b
    return None


def normalize_color(color: str | None) -> str | None:
    """A colour as shields names it in its JSON output, or None when it is not one."""
    if color is None:
        return None
    if color in NAMED:
        return color
    if color in ALIASES:
        return ALIASES[color]
    if _BARE_HEX.fullmatch(color):
        return "#" + color.lower()
    if rgb_of(color.strip()) is not None:
        return color.lower()
    return None


def svg_color(color: str | None) -> str | None:
    """A colour as it is written into the SVG, or None when it is not one."""
    normalized = normalize_color(color)
    if normalized in NAMED:
        return NAMED[normalized]
    if normalized in ALIASES:
        return NAMED[ALIASES[normalized]]
    return normalized


def brightness(color: str) -> float | None:
    """A colour's brightness from 0 to 1 as shields works it out (YIQ, to two
    decimals, as JavaScript's +x.toFixed(2)); None for a colour it cannot read."""
    rgb = rgb_of(color)
    if rgb is None:
        return None
    r, g, b = rgb
    return float(f"{(r * 299 + g * 587 + b * 114) / 255000:.2f}")


def is_light(color: str) -> bool:
    """True when dark text reads better on this background (shields' 0.69 threshold)."""
    value = brightness(color)
    return value is not None and value > 0.69
