"""A sparkline badge: a flat badge whose right side is a line of daily counts.

The label side is drawn as badge-maker draws a flat badge's (same widths, text and
shadow); the right side is a fixed-width panel with a polyline in the badge colour.
The numbers themselves are in `aria-label` and `<title>`, for screen readers and
for anyone hovering over the badge.
"""

from __future__ import annotations

from typing import Final

from tallyd.badges.metrics import VERDANA_11, is_light, preferred_width, svg_color
from tallyd.badges.render import clean, escape, num

HEIGHT: Final = 20
PLOT_WIDTH: Final = 64
PAD: Final = 4
TOP, BOTTOM = 4.0, 16.0
PANEL: Final = "#fff"
_FONT_FAMILY: Final = "Verdana,Geneva,DejaVu Sans,sans-serif"
_SVG_OPEN: Final = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
)


def points(counts: list[int]) -> str:
    """The polyline's points: oldest on the left, the highest day at the top."""
    top = max(counts, default=0)
    step = PLOT_WIDTH / max(len(counts) - 1, 1)
    out = []
    for i, n in enumerate(counts):
        y = BOTTOM - (BOTTOM - TOP) * n / top if top else BOTTOM
        out.append(f"{num(round(PAD + i * step, 2))},{num(round(y, 2))}")
    return " ".join(out)


def sparkline(
    label: str, color: str | None, label_color: str | None, counts: list[int], texts: list[str]
) -> str:
    """The badge for `counts` (one per day, oldest first), read out as `texts`."""
    label = clean(label)
    line = svg_color(color) or "#4c1"
    left_color = svg_color(label_color) or "#555"
    label_width = preferred_width(label, VERDANA_11) if label else 0
    left = label_width + 10 if label else 0
    right = PLOT_WIDTH + 2 * PAD
    width = left + right
    spoken = f"last {len(counts)} days: {', '.join(texts)}"
    aria = escape(f"{label}: {spoken}" if label else spoken)
    text = ""
    if label:
        fill, shadow = ("#333", "#ccc") if is_light(left_color) else ("#fff", "#010101")
        x = 5 * label_width + 60
        content = escape(label)
        text = (
            f'<text aria-hidden="true" x="{x}" y="150" fill="{shadow}" fill-opacity=".3"'
            f' transform="scale(.1)" textLength="{10 * label_width}">{content}</text>'
            f'<text x="{x}" y="140" transform="scale(.1)" fill="{fill}"'
            f' textLength="{10 * label_width}">{content}</text>'
        )
    return (
        f'{_SVG_OPEN} width="{width}" height="{HEIGHT}" role="img" aria-label="{aria}">'
        f"<title>{aria}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb"'
        ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="{HEIGHT}" rx="3" fill="#fff"/>'
        f'</clipPath><g clip-path="url(#r)"><rect width="{left}" height="{HEIGHT}"'
        f' fill="{escape(left_color)}"/><rect x="{left}" width="{right}" height="{HEIGHT}"'
        f' fill="{PANEL}"/><rect width="{width}" height="{HEIGHT}" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="{_FONT_FAMILY}"'
        f' text-rendering="geometricPrecision" font-size="110">{text}</g>'
        f'<g transform="translate({left} 0)" aria-hidden="true"><polyline fill="none"'
        f' stroke="{escape(line)}" stroke-width="1.5" stroke-linejoin="round"'
        f' stroke-linecap="round" points="{points(counts)}"/></g></svg>'
    )
