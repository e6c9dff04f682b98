"""Logos and the dark-mode theme on badges, through a real server."""

from __future__ import annotations

import base64
import json
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from tallyd.badges.logos import DATA_PREFIX, MAX_LOGO_BYTES, LogoError, custom_logo, named_logo
from tallyd.badges.render import render
from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)

SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
GOLDENS = json.loads((pathlib.Path(__file__).parent / "data" / "badge_goldens.json").read_text())
CIRCLE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    b'<circle cx="12" cy="12" r="10" fill="#fff"/></svg>'
)


def data_url(svg: bytes, prefix: str = DATA_PREFIX) -> str:
    return prefix + base64.b64encode(svg).decode()


def golden(style: str, label: str, message: str, logo: bool) -> str:
    """The badge-maker SVG for these texts, default colours, with or without a logo."""
    for c in GOLDENS["cases"]:
        if (c["style"], c["label"], c["message"], c["color"], c["label_color"]) == (
            style,
            label,
            message,
            None,
            None,
        ) and bool(c.get("logo")) == logo:
            return str(c["svg"])
    raise LookupError((style, label, message, logo))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("logos")).start()
    yield s
    s.stop()


def get(srv: Server, **params: str) -> httpx.Response:
    # A fresh id showing 1,234 without counting: the goldens' message.
    r = srv.get("/badge/logo/test.svg", increment="0", base="1234", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
    return r


def parsed(r: httpx.Response) -> ET.Element:
    root = ET.fromstring(r.text)
    assert root.tag == SVG_NS + "svg" and root.get("role") == "img"
    title = root.find(SVG_NS + "title")
    assert title is not None and title.text == root.get("aria-label")
    return root


def logo_svg(root: ET.Element) -> ET.Element:
    """The SVG document inside the badge's logo `<image>`."""
    (image,) = root.iter(SVG_NS + "image")
    assert (image.get("width"), image.get("height")) == ("14", "14")
    href = image.get(XLINK_HREF, "")
    assert href.startswith(DATA_PREFIX)
    return ET.fromstring(base64.b64decode(href[len(DATA_PREFIX) :]))


def refused(r: httpx.Response, error: str) -> str:
    assert r.headers["x-tallyd-error"] == error
    root = parsed(r)
    assert root.find(SVG_NS + "image") is None
    return root.get("aria-label", "")


def test_default_badge_is_byte_identical_to_badge_maker(srv: Server) -> None:
    assert get(srv).text == golden("flat", "hits", "1,234", logo=False)
    assert "<style" not in get(srv, style="plastic").text


@pytest.mark.parametrize("style", ["flat", "plastic", "for-the-badge", "social"])
def test_named_logo_is_drawn_as_badge_maker_draws_it(srv: Server, style: str) -> None:
    r = get(srv, logo="github", style=style)
    root = parsed(r)
    icon = logo_svg(root)
    # GitHub's near-black turns whitesmoke on the grey label, stays on social's white.
    assert icon.get("fill") == ("#181717" if style == "social" else "whitesmoke")
    assert icon.find(SVG_NS + "path") is not None
    # Its position, and the label's width grown for it: badge-maker's SVG byte for byte.
    assert r.text == golden(style, "hits", "1,234", logo=True)
    no_logo = ET.fromstring(get(srv, style=style).text)
    assert float(root.get("width", 0)) > float(no_logo.get("width", 0))


def test_logo_color_and_brand_colours() -> None:
    def fill(url: str) -> str | None:
        return ET.fromstring(base64.b64decode(url[len(DATA_PREFIX) :])).get("fill")

    assert fill(named_logo("github", "red", "flat")) == "#e05d44"
    assert fill(named_logo("Python", None, "flat")) == "#3776AB"  # bright enough to keep
    assert fill(named_logo("swagger", None, "social")) == "#333"  # too light on white
    with pytest.raises(LogoError) as err:
        named_logo("no-such-brand-at-all", None, "flat")
    assert err.value.unknown


def test_logo_color_over_http(srv: Server) -> None:
    icon = logo_svg(parsed(get(srv, logo="github", logoColor="ff69b4")))
    assert icon.get("fill") == "#ff69b4"
    assert "invalid logoColor" in refused(
        get(srv, logo="github", logoColor="bogus"), "bad_logoColor"
    )


def test_theme_auto_adds_a_dark_mode_style_sheet(srv: Server) -> None:
    for style in ("flat", "flat-square", "plastic", "for-the-badge", "social"):
        r = get(srv, theme="auto", logo="github", style=style)
        root = parsed(r)
        sheets = [el.text or "" for el in root.iter(SVG_NS + "style")]
        assert any("@media (prefers-color-scheme: dark)" in text for text in sheets), sheets
        logo_svg(root)
    # Only the style sheet is added: the same badge otherwise.
    flat = get(srv, theme="auto").text
    assert flat.replace(
        "<style>@media (prefers-color-scheme: dark)"
        '{g>rect:first-child:not(:last-child)[fill="#555"]{fill:#30363d}}</style>',
        "",
    ) == golden("flat", "hits", "1,234", logo=False)
    assert "invalid theme" in refused(get(srv, theme="dark-ish"), "bad_theme")


def test_custom_logo_is_drawn(srv: Server) -> None:
    url = data_url(CIRCLE)
    # As written in a URL: the '+' of svg+xml unescaped reads as a space.
    r = srv.client.get(f"/badge/logo/test.svg?increment=0&logo={url.replace('+', '%2B')}")
    icon = logo_svg(parsed(r))
    assert icon.find(SVG_NS + "circle") is not None
    r = srv.client.get(f"/badge/logo/test.svg?increment=0&logo={url}")
    assert logo_svg(parsed(r)).find(SVG_NS + "circle") is not None


HOSTILE = {
    "script": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "onload": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><path d="M0 0"/></svg>',
    "external href": (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<use xlink:href="https://evil.example/x.svg#a"/></svg>'
    ),
    "javascript href": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><use href="javascript:alert(1)"/></svg>'
    ),
    "image": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/t.png"/></svg>'
    ),
    "external url()": (
        b'<svg xmlns="http://www.w3.org/2000/svg">'
        b'<rect style="fill:url(https://evil.example/t)" width="1" height="1"/></svg>'
    ),
    "foreignObject": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject>'
        b'<div xmlns="http://www.w3.org/1999/xhtml">hi</div></foreignObject></svg>'
    ),
    "style sheet": b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import "x.css";</style></svg>',
    "entities": (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&a;&a;&a;</text></svg>'
    ),
    "stylesheet instruction": (
        b'<?xml-stylesheet href="https://evil.example/x.css"?>'
        b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    ),
    "too large": CIRCLE.replace(b"<circle", b'<path d="' + b"M0 0" * 1100 + b'"/><circle'),
    "not svg root": b'<html xmlns="http://www.w3.org/1999/xhtml"/>',
    "not xml": b"GIF89a\x01\x00\x01\x00",
    "no namespace": b"<svg><path/></svg>",
    # Not UTF-8: the endpoint JSON carries the SVG as text.
    "utf-16": '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0"/></svg>'.encode("utf-16"),
    "latin-1": (
        b'<?xml version="1.0" encoding="ISO-8859-1"?>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><title>caf\xe9</title></svg>'
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_custom_logo_is_refused(srv: Server, name: str) -> None:
    assert "invalid logo" in refused(get(srv, logo=data_url(HOSTILE[name])), "bad_logo")
    # The endpoint JSON answers too, as shields' rules say: 200 and isError.
    r = srv.get("/badge/t/acc.json", logo=data_url(HOSTILE[name]))
    assert r.status_code == 200 and r.json()["isError"] is True


def test_other_data_urls_are_refused(srv: Server) -> None:
    png = data_url(b"\x89PNG\r\n\x1a\n", "data:image/png;base64,")
    assert "invalid logo" in refused(get(srv, logo=png), "bad_logo")
    assert "invalid logo" in refused(get(srv, logo=DATA_PREFIX + "%%%not-base64"), "bad_logo")
    assert len(HOSTILE["too large"]) > MAX_LOGO_BYTES


def test_unknown_logo_is_refused(srv: Server) -> None:
    aria = refused(get(srv, logo="no-such-brand-at-all"), "unknown_logo")
    assert aria == "hits: unknown logo"


def test_custom_logo_is_canonical() -> None:
    url = data_url(CIRCLE)
    assert custom_logo(url.replace("+", " ")) == url
    assert render("hits", "1", logo=url).count("<image") == 1


def test_openapi_lists_logo_and_theme(srv: Server) -> None:
    params = srv.get("/openapi.json").json()["paths"]["/badge/{id}.svg"]["get"]["parameters"]
    by_name = {p["name"]: p for p in params}
    assert {"logo", "logo_color", "theme"} <= set(by_name)
    # Any text is taken (anything else is an error badge); the values are listed.
    assert by_name["theme"]["schema"]["examples"] == ["auto"]


def test_endpoint_json_passes_the_logo_on_in_shields_keys(srv: Server) -> None:
    base = {"schemaVersion", "label", "message", "color", "labelColor", "isError", "cacheSeconds"}
    doc = srv.get("/badge/logo/test.json", logo="GitHub", logoColor="ff69b4").json()
    assert set(doc) == base | {"namedLogo", "logoColor"}
    assert (doc["namedLogo"], doc["logoColor"]) == ("github", "#ff69b4")
    doc = srv.get("/badge/logo/test.json", logo="github").json()
    assert set(doc) == base | {"namedLogo"}
    doc = srv.get("/badge/logo/test.json", logo=data_url(CIRCLE)).json()
    assert set(doc) == base | {"logoSvg"} and doc["logoSvg"] == CIRCLE.decode()
    doc = srv.get("/badge/logo/test.json", logo="no-such-brand-at-all").json()
    assert set(doc) == base and doc["isError"] is True and doc["message"] == "unknown logo"
    assert set(srv.get("/badge/logo/test.json", theme="auto").json()) == base
