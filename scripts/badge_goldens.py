#!/usr/bin/env python3
"""Renders the badge golden cases with npm's badge-maker into tests/data/badge_goldens.json.

tests/test_badge_render.py renders the same cases with tallyd and compares the SVGs.
Needs node and npm; badge-maker is installed into a temporary directory. Logo cases
pass badge-maker the logo as a data URL (its `logoBase64`), made by tallyd the way
shields.io's server makes one from simple-icons.

    python scripts/badge_goldens.py
"""

from __future__ import annotations

import itertools
import json
import pathlib
import subprocess
import tempfile
from base64 import b64encode

from tallyd.badges.logos import DATA_PREFIX, named_logo

BADGE_MAKER = "badge-maker@4.1.0"
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "badge_goldens.json"
STYLES = ["flat", "flat-square", "plastic", "for-the-badge", "social"]
TEXTS = [
    ("hits", "0"),
    ("hits", "1"),
    ("hits", "1,234"),
    ("hits", "9,876,543,210"),
    ("views", "12.3k"),
    ("today", "1.2M"),
    ("", "42"),
    ("label only", ""),
    ("unique", "17"),
    ("build", "passing"),
    ("Ünïcödé ñ", "ça marche"),
    ("<script>alert('x')</script>", "<b>&amp;</b>"),
    ('a & b "quoted"', "it's"),
    ("emoji 🎉", "🚀🚀🚀"),
    ("עברית", "שלום 123"),
    ("مرحبا", "١٢٣"),
    ("日本語", "カウンター"),
    ("  padded  ", "  7  "),
    ("WWWWWWWWWW", "iiiiiiiiii"),
    ("mixed Case Label", "Straße"),
    ("tab\there", "x"),
    ("a/b:c*%", "owner/name"),
    ("long label with many words in it", "999,999,999"),
    ("ẞ ǆ ﬁ", "ǲ"),
    ("symbols ©®™", "€£¥"),
]
COLORS = [
    None,
    "blue",
    "brightgreen",
    "ff69b4",
    "#e6e6e6",
    "yellow",
    "pink",
    "lightgrey",
    "rgb(240,240,240)",
    "important",
    "ABC",
    "not-a-colour",
    "white",
    "000",
]
LABEL_COLORS = [None, "grey", "fff", "orange", "#333", "informational", "bogus"]
# (label, message, color, label_color, logo name or None for CUSTOM_LOGO, logoColor)
LOGO_TEXTS = [
    ("hits", "1,234", None, None, "github", None),
    ("", "42", None, None, "github", None),
    ("", "42", "red", "blue", "github", None),
    ("views", "", None, None, "github", None),
    ("build", "passing", "ff69b4", "#333", "python", None),
    ("Ünïcödé ñ", "ça marche", None, None, None, None),
    ("hits", "9,876,543,210", "yellow", None, "github", "red"),
    ("<script>", "<b>&amp;</b>", None, "fff", "docker", "ABC"),
    ("today", "1.2M", "blue", None, "nodedotjs", None),
]
CUSTOM_LOGO = (
    DATA_PREFIX
    + b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
        b'<circle cx="12" cy="12" r="10" fill="#fff"/></svg>'
    ).decode()
)

RENDER_JS = """
const { makeBadge } = require('badge-maker')
let input = ''
process.stdin.on('data', chunk => (input += chunk))
process.stdin.on('end', () => {
  const cases = JSON.parse(input)
  const out = cases.map(c => {
    const format = { label: c.label, message: c.message, style: c.style }
    if (c.color !== null) format.color = c.color
    if (c.label_color !== null) format.labelColor = c.label_color
    if (c.logo) format.logoBase64 = c.logo
    return { ...c, svg: makeBadge(format) }
  })
  process.stdout.write(JSON.stringify(out, null, 1))
})
"""


def cases() -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    colors = itertools.cycle(COLORS)
    label_colors = itertools.cycle(LABEL_COLORS)
    for style in STYLES:
        for label, message in TEXTS:
            out.append(
                {
                    "style": style,
                    "label": label,
                    "message": message,
                    "color": next(colors),
                    "label_color": next(label_colors),
                }
            )
        for color in COLORS:
            out.append(
                {
                    "style": style,
                    "label": "hits",
                    "message": "1,234",
                    "color": color,
                    "label_color": None,
                }
            )
        for label_color in LABEL_COLORS:
            out.append(
                {
                    "style": style,
                    "label": "hits",
                    "message": "5",
                    "color": None,
                    "label_color": label_color,
                }
            )
            out.append(
                {
                    "style": style,
                    "label": "",
                    "message": "5",
                    "color": "red",
                    "label_color": label_color,
                }
            )
        for label, message, color, label_color, name, logo_color in LOGO_TEXTS:
            out.append(
                {
                    "style": style,
                    "label": label,
                    "message": message,
                    "color": color,
                    "label_color": label_color,
                    "logo": named_logo(name, logo_color, style) if name else CUSTOM_LOGO,
                }
            )
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "install", "--silent", "--no-save", "--prefix", tmp, BADGE_MAKER],
            check=True,
        )
        script = pathlib.Path(tmp) / "render.js"
        script.write_text(RENDER_JS)
        result = subprocess.run(
            ["node", str(script)],
            input=json.dumps(cases()),
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        )
    rendered = json.loads(result.stdout)
    OUT.write_text(
        json.dumps({"badge_maker": BADGE_MAKER, "cases": rendered}, indent=1, ensure_ascii=False)
        + "\n"
    )
    print(f"wrote {len(rendered)} cases to {OUT}")


if __name__ == "__main__":
    main()
