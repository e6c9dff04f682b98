#!/usr/bin/env python3
"""Regenerates tallyd/badges/data.json from public font-metric and colour data.

shields.io measures badge text with the character-width tables of the npm package
`anafanafo` (Verdana 10/11px, bold Verdana 10px, bold Helvetica 11px, measured from the
fonts in a browser); named CSS colours come from the npm package `color-name`. Both are
MIT licensed. This script installs the pinned versions into a temporary directory with
npm and writes the tables tallyd renders with, so the badge widths are the same numbers.

    python scripts/badge_data.py
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import tempfile

PACKAGES = ["anafanafo@2.0.0", "color-name@1.1.4"]
FONTS = {
    "11px Verdana": "verdana-11px-normal.json",
    "10px Verdana": "verdana-10px-normal.json",
    "bold 10px Verdana": "verdana-10px-bold.json",
    "bold 11px Helvetica": "helvetica-11px-bold.json",
}
OUT = pathlib.Path(__file__).resolve().parent.parent / "tallyd" / "badges" / "data.json"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "install", "--silent", "--no-save", "--prefix", tmp, *PACKAGES],
            check=True,
        )
        modules = pathlib.Path(tmp) / "node_modules"
        fonts = {
            font: json.loads((modules / "anafanafo" / "data" / name).read_text())
            for font, name in FONTS.items()
        }
        colors = json.loads(
            (modules / "color-name" / "index.js").read_text().split("=", 1)[1].strip().rstrip(";")
        )
    data = {"source": PACKAGES, "fonts": fonts, "css_colors": colors}
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
