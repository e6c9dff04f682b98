"""The badge query parameters (SPEC §6): parsed and validated once per distinct query.

The same query string comes back on every view of a README, so the parsed result is
cached by the raw bytes: the hot path pays one dictionary lookup, not a parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tallyd.badges.logos import LogoError, custom_logo, named_logo
from tallyd.badges.metrics import normalize_color
from tallyd.badges.render import STYLES, THEMES
from tallyd.events import Rejected, check_name
from tallyd.web import HTTPError

METRICS: Final = (
    "total",
    "today",
    "week",
    "month",
    "year",
    "7d",
    "30d",
    "spark7",
    "spark30",
    "unique",
)
SPARKS: Final = ("spark7", "spark30")
COUNTS: Final = ("all", "github")
MAX_TZ: Final = 64
FORMATS: Final = ("comma", "short", "plain")
MAX_LABEL: Final = 100
MAX_BASE: Final = 10**15
_PREFIXES: Final = "kMGTPEZY"


@dataclass(frozen=True, slots=True)
class BadgeParams:
    label: str = "hits"
    color: str | None = None
    label_color: str | None = None
    style: str = "flat"
    logo: str | None = None  # a data URL, drawn left of the label
    logo_name: str | None = None  # the simple-icons name it was made from
    logo_color: str | None = None
    theme: str | None = None  # "auto": follows the reader's dark mode
    metric: str = "total"
    format: str = "comma"
    base: int = 0
    # None: the route decides (an image counts its views, the endpoint JSON does not).
    increment: bool | None = None
    event: str = "hit"
    tz: str | None = None  # an IANA name; None: the server's --timezone
    count: str = "all"  # "github": only views through GitHub's image proxy count

    @property
    def figure(self) -> str:
        """What the figure cache knows this badge's number by: its metric and zone."""
        return self.metric if self.tz is None else f"{self.metric}@{self.tz}"

    def message(self, count: int) -> str:
        return format_count(count + self.base, self.format)


def format_count(n: int, fmt: str) -> str:
    """`comma`: 1,234 (the seed's); `short`: 1.2k as shields.io shortens; `plain`: 1234."""
    if fmt == "comma":
        return f"{n:,}"
    if fmt == "plain":
        return str(n)
    for i in range(len(_PREFIXES) - 1, -1, -1):
        limit = 1000 ** (i + 1)
        if n >= limit:
            scaled = n / limit
            # One decimal for small figures unless it is .0 (1.2k, but 1k and 12k).
            if scaled < 10:
                one = f"{scaled:.1f}"
                if not one.endswith("0"):
                    return one + _PREFIXES[i]
            rounded = int(scaled + 0.5)
            if rounded < 1000 or i + 1 == len(_PREFIXES):
                return f"{rounded}{_PREFIXES[i]}"
            return "1" + _PREFIXES[i + 1]
    return str(n)


def _choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise HTTPError(400, f"bad_{name}", f"{name} must be one of {', '.join(allowed)}")
    return value


def _color(value: str, name: str) -> str:
    if normalize_color(value) is None:
        raise HTTPError(
            400,
            f"bad_{name}",
            f"{name} must be a shields.io colour name (brightgreen, blue, …), "
            "a CSS colour name or a hex value like ff69b4",
        )
    return value


def _logo(q: dict[str, str], style: str) -> dict[str, str]:
    """`logo` (a simple-icons name or a data: SVG) and its colour, as BadgeParams fields."""
    value = q.get("logo")
    if not value:
        return {}
    kw: dict[str, str] = {}
    for name in ("logo_color", "logoColor"):
        if q.get(name) and "logo_color" not in kw:
            kw["logo_color"] = _color(q[name], name)
    try:
        if value.startswith("data:"):
            kw["logo"] = custom_logo(value)
        else:
            kw["logo"] = named_logo(value, kw.get("logo_color"), style)
            kw["logo_name"] = value.strip().lower()
    except LogoError as err:
        raise HTTPError(400, "unknown_logo" if err.unknown else "bad_logo", err.detail) from None
    return kw


def _text(value: str, name: str) -> str:
    if len(value) > MAX_LABEL:
        raise HTTPError(400, f"bad_{name}", f"{name} is longer than {MAX_LABEL} characters")
    return value


def _zone(value: str) -> str:
    try:
        if len(value) > MAX_TZ:
            raise ValueError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise HTTPError(
            400, "bad_tz", "tz must be an IANA time zone name like Europe/Madrid"
        ) from None
    return value


def _first_values(query: bytes) -> dict[str, str]:
    """Each parameter's first value; UnicodeDecodeError if one is not UTF-8."""
    q: dict[str, str] = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="strict"):
        q.setdefault(k, v)
    return q


@lru_cache(maxsize=4096)
def parse_params(query: bytes) -> tuple[BadgeParams, str | None]:
    """The badge parameters of a query string, and its `repo` (the seed's id), if any."""
    try:
        q = _first_values(query)
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_query", "the query is not valid percent-encoded UTF-8") from None
    kw: dict[str, Any] = {}
    if "label" in q:
        kw["label"] = _text(q["label"], "label")
    for name in ("color", "label_color"):
        if q.get(name):
            kw[name] = _color(q[name], name)
    if q.get("labelColor") and "label_color" not in kw:
        kw["label_color"] = _color(q["labelColor"], "labelColor")
    if q.get("style"):
        kw["style"] = _choice(q["style"], "style", STYLES)
    kw.update(_logo(q, kw.get("style", "flat")))
    if q.get("theme"):
        kw["theme"] = _choice(q["theme"], "theme", THEMES)
    if q.get("metric"):
        kw["metric"] = _choice(q["metric"], "metric", METRICS)
    if q.get("format"):
        kw["format"] = _choice(q["format"], "format", FORMATS)
    if q.get("base"):
        raw = q["base"]
        if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_BASE:
            raise HTTPError(400, "bad_base", f"base must be a whole number 0..{MAX_BASE}")
        kw["base"] = int(raw)
    if "increment" in q:
        kw["increment"] = _choice(q["increment"], "increment", ("0", "1")) == "1"
    if q.get("event"):
        kw["event"] = check_id(q["event"], "event")
    if q.get("tz"):
        kw["tz"] = _zone(q["tz"])
    if q.get("count"):
        kw["count"] = _choice(q["count"], "count", COUNTS)
    repo = q.get("repo")
    return BadgeParams(**kw), (check_id(repo, "repo") if repo is not None else None)


def fallback(query: bytes) -> tuple[str, str]:
    """The label and style of an error badge: the query's own where they are valid,
    so a badge with one bad parameter still looks like its neighbours."""
    default = BadgeParams()
    try:
        q = _first_values(query)
    except UnicodeDecodeError:
        return default.label, default.style
    label = q.get("label", default.label)
    style = q.get("style") or default.style
    return (
        label if len(label) <= MAX_LABEL else default.label,
        style if style in STYLES else default.style,
    )


def check_id(value: str, what: str = "id") -> str:
    """A badge id is an account name: 1..200 characters, no control characters, and
    no empty part between slashes (`/x`, `owner//name` and `owner/` would each be
    an id of their own, next to the `owner/x` and `owner/name` that were meant)."""
    try:
        name = check_name(value, what)
    except Rejected as err:
        raise HTTPError(400, f"bad_{what}", err.detail) from None
    if "/" in name and "" in name.split("/"):
        raise HTTPError(400, f"bad_{what}", f"an {what}'s parts between slashes may not be empty")
    return name
