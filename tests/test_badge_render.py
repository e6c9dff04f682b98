"""The badge renderer against shields.io's badge-maker, and its escaping."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallyd.badges.metrics import FONTS, VERDANA_11, normalize_color, preferred_width
from tallyd.badges.render import STYLES, render

GOLDENS = json.loads((pathlib.Path(__file__).parent / "data" / "badge_goldens.json").read_text())
SVG = "{http://www.w3.org/2000/svg}"


def _id(case: dict[str, Any]) -> str:
    return f"{case['style']}-{case['label']!r}-{case['message']!r}-{case['color']}"


@pytest.mark.parametrize("case", GOLDENS["cases"], ids=_id)
def test_same_svg_as_badge_maker(case: dict[str, Any]) -> None:
    got = render(
        case["label"],
        case["message"],
        case["style"],
        case["color"],
        case["label_color"],
        case.get("logo"),
    )
    assert got == case["svg"]


def test_goldens_cover_every_style_and_many_cases() -> None:
    assert {c["style"] for c in GOLDENS["cases"]} == set(STYLES)
    assert len(GOLDENS["cases"]) >= 200
    with_logo = [c for c in GOLDENS["cases"] if c.get("logo")]
    assert {c["style"] for c in with_logo} == set(STYLES)
    assert {bool(c["label"]) for c in with_logo} == {True, False}


def test_widths_from_verdana_table() -> None:
    # Sums of the table's widths, truncated, then rounded up to an odd number.
    assert preferred_width("hits", VERDANA_11) == 21  # 6.96 + 3.02 + 4.33 + 5.73 = 20.04
    assert preferred_width("1,234", VERDANA_11) == 31
    assert preferred_width("", VERDANA_11) == 1


@given(st.text(max_size=40), st.sampled_from(sorted(FONTS)))
def test_a_width_kept_for_equally_wide_texts_is_the_texts_own(text: str, font: str) -> None:
    # The cache is keyed by the text with equally wide characters made one: what it
    # gives must be what this text's own widths, summed in order, give.
    w = int(FONTS[font].width(text))
    assert preferred_width(text, FONTS[font]) == (w + 1 if w % 2 == 0 else w)
    shifted = "".join(chr(ord(c) ^ 1) if "0" <= c <= "8" else c for c in text)
    assert preferred_width(shifted, FONTS[font]) == preferred_width(text, FONTS[font])


@pytest.mark.parametrize("style", STYLES)
def test_markup_in_texts_stays_text(style: str) -> None:
    label = '</text><script>alert("x")</script>'
    message = "a & b < c > 'd' \"e\" 🎉 שלום"
    svg = render(label, message, style, color='red"/><x a="', label_color="blue' onload='x")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert not [el for el in root.iter() if el.tag.endswith(("script", "x"))]
    texts = [el.text or "" for el in root.iter(f"{SVG}text")]
    shown = (label, message) if style != "for-the-badge" else (label.upper(), message.upper())
    assert any(shown[1] == t for t in texts)
    assert root.get("role") == "img"
    assert root.get("aria-label") == f"{shown[0]}: {shown[1]}"
    assert root.find(f"{SVG}title") is not None


@given(
    label=st.text(max_size=30),
    message=st.text(max_size=30),
    style=st.sampled_from(STYLES),
)
def test_any_text_gives_well_formed_svg(label: str, message: str, style: str) -> None:
    root = ET.fromstring(render(label, message, style))
    assert float(root.get("width", "0")) > 0


def test_light_backgrounds_switch_to_dark_text() -> None:
    dark = render("hits", "1", "flat", "blue")
    light = render("hits", "1", "flat", "#e6e6e6")
    assert 'fill="#fff" textLength="70">1<' in dark
    assert 'fill="#333" textLength="70">1<' in light


def test_colour_names() -> None:
    assert normalize_color("success") == "brightgreen"
    assert normalize_color("ABC") == "#abc"
    assert normalize_color("pink") == "pink"
    assert normalize_color("javascript:alert(1)") is None


def test_unknown_style() -> None:
    with pytest.raises(ValueError, match="for-the-badge"):
        render("a", "b", "round")
