"""A realistic event corpus: the events the Bootic event bus carried, generated.

    python bench/corpus.py --describe [-n 100000] [--seed 20130905]

tallyd's own minimal event (`{"type":"pageview","data":{"account":...}}`) is not
what real producers send. The Bootic bus (the first seed's source) carried one
ZeroMQ frame per event, `<type> <payload>`, the payload being Go's
`encoding/json` of a generic map (Go 1.7 and before: sorted keys, no whitespace,
`\\u0026` `\\u003c` `\\u003e` escapes, raw UTF-8, every number a float64 printed
in exponent form from 1e6 up and below 1e-4) and, in 2013-14, the same maps as
msgpack. This module generates such events, deterministically from a seed:

- types in a realistic mix: mostly `pageview`, ~7% `order` with `data.status`
  draft/checkout/closed, and `order.create`, `order.update`, `product.update`,
  `request`, `apievent`, `load_avg`;
- 1,000 shops (accounts) with a Zipf-like skew, plus the platform's own `bootic`
  account for `load_avg`;
- times in order over four hours from 18:00 at the producers' offset (-04:00),
  crossing midnight UTC, in the forms producers used: Go's RFC 3339 with
  nanoseconds (most), Ruby's `Time#to_s` (orders, products), RFC 3339 in UTC
  (`request`), Unix seconds as Go prints a float (`load_avg`, a few pageviews);
- nested `browser` objects, URLs with `&`, titles with `<`, `>` and Spanish
  words (`Niños`, `Camión`), payloads of 300-900 bytes; no `id`, no `seq`.

`expected_counts` works out, from the maps alone, what a store must hold.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")

SEED = 20130905
ACCOUNTS = 1000
# The producers' local time (Chile, September 2013). Four hours from 18:00 local
# cross midnight UTC: an offset read wrongly moves events to the wrong day.
LOCAL = timezone(timedelta(hours=-4))
START = datetime(2013, 9, 5, 18, 0, tzinfo=LOCAL)
SPAN_SECONDS = 4 * 3600

# --- Go's encoding/json, as of Go 1.7 --------------------------------------------

_GO_ESCAPE = re.compile('[\x00-\x1f"\\\\&<>\u2028\u2029]')
_GO_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_escape(m: re.Match[str]) -> str:
    c = m.group()
    return _GO_SHORT.get(c) or f"\\u{ord(c):04x}"


def go_string(s: str) -> str:
    """A JSON string as Go writes it: `\\u0026 \\u003c \\u003e`, control characters
    as `\\u00XX` (but `\\n \\r \\t`), U+2028/9 escaped, everything else raw UTF-8."""
    if _GO_ESCAPE.search(s) is None:
        return f'"{s}"'
    return '"' + _GO_ESCAPE.sub(_go_escape, s) + '"'


def go_float(f: float) -> str:
    """A float64 as Go 1.7's encoding/json prints it: `strconv.FormatFloat(f, 'g',
    -1, 64)`, the shortest digits that read back as `f`, in exponent form (at least
    two exponent digits) when the decimal exponent is below -4 or 6 and above."""
    if not math.isfinite(f):
        raise ValueError(f"json: unsupported value: {f!r}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    a = abs(f)
    if 1e-4 <= a < 1e6:
        # Python's repr has the same shortest digits and is plain in this range.
        return str(int(f)) if f.is_integer() else repr(f)
    mantissa, _, e = repr(a).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac.rstrip("0")).rstrip("0") or "0"
    exp = int(e or 0) + len(whole) - 1
    lead = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if f < 0 else ''}{lead}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def go_json(value: Any) -> str:
    """`json.Marshal` of a generic Go value (map[string]interface{}, []interface{},
    string, float64, bool, nil) from its Python equivalent; ints are float64s too."""
    t = type(value)
    if t is dict:
        return _go_object(value)
    if t is str:
        return go_string(value)
    if t is float or t is int:
        return go_float(float(value))
    if t is list or t is tuple:
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    raise TypeError(f"json: unsupported type: {t.__name__}")


# A corpus repeats a few dozen keys millions of times: each is escaped once.
_go_keys: dict[str, str] = {}


def _go_object(d: dict[str, Any]) -> str:
    parts = []
    search = _GO_ESCAPE.search
    for k in sorted(d):
        key = _go_keys.get(k)
        if key is None:
            key = go_string(k) + ":"
            if len(_go_keys) < 10_000:
                _go_keys[k] = key
        v = d[k]
        t = type(v)
        if t is str:
            parts.append(f'{key}"{v}"' if search(v) is None else key + go_string(v))
        elif t is dict:
            parts.append(key + _go_object(v))
        else:
            parts.append(key + go_json(v))
    return "{" + ",".join(parts) + "}"


# Known outputs of Go's encoding/json (before 1.8), held against the encoder by `check`.
GO_SAMPLES: list[tuple[Any, str]] = [
    (2216606.0, "2.216606e+06"),
    (1378387063.0, "1.378387063e+09"),
    (1378387063.619, "1.378387063619e+09"),
    (1e6, "1e+06"),
    (999999.0, "999999"),
    (3.0, "3"),
    (6.5, "6.5"),
    (-4.0, "-4"),
    (0.1 + 0.2, "0.30000000000000004"),
    (0.0001, "0.0001"),
    (0.00001, "1e-05"),
    (1e21, "1e+21"),
    (1e100, "1e+100"),
    (0.0, "0"),
    ("a&b<c>", '"a\\u0026b\\u003cc\\u003e"'),
    ("Niños\n\x01\u2028", '"Niños\\n\\u0001\\u2028"'),
    ({"b": {"z": 1, "a": [True, None]}, "a": "x"}, '{"a":"x","b":{"a":[true,null],"z":1}}'),
    (
        {
            "data": {
                "_ts": "1378386066861",
                "account": "sajalata",
                "app": "bootic_tracker_app",
                "browser": {
                    "name": "Safari",
                    "os": "CPU iPhone OS 6_1_4 like Mac OS X",
                    "version": "6.0",
                },
                "h": "sajalata.bootic.net",
                "path": "/categories/ropa",
                "r": "http://sajalata.bootic.net/categories/ropa?page=2&utm_source=facebook",
                "ref": "",
                "tt": "Ropa | Sajalata",
                "tz": "-3",
                "unq": "1",
                "user": "1378386066861.4434",
            },
            "time": "2013-09-05T09:01:33.619303604-04:00",
            "type": "pageview",
        },
        '{"data":{"_ts":"1378386066861","account":"sajalata","app":"bootic_tracker_app",'
        '"browser":{"name":"Safari","os":"CPU iPhone OS 6_1_4 like Mac OS X","version":"6.0"},'
        '"h":"sajalata.bootic.net","path":"/categories/ropa",'
        '"r":"http://sajalata.bootic.net/categories/ropa?page=2\\u0026utm_source=facebook",'
        '"ref":"","tt":"Ropa | Sajalata","tz":"-3","unq":"1","user":"1378386066861.4434"},'
        '"time":"2013-09-05T09:01:33.619303604-04:00","type":"pageview"}',
    ),
]


def check() -> None:
    """Hold the encoder to Go's known outputs; raise AssertionError on a difference."""
    for value, expected in GO_SAMPLES:
        got = go_json(value)
        assert got == expected, f"{value!r}: {got} != {expected}"


# --- The producers' time forms ------------------------------------------------


def go_time(ns: int, tz: timezone) -> str:
    """Go's RFC 3339 with nanoseconds: zeros trimmed, no fraction when zero, `Z` at UTC."""
    s, frac = divmod(ns, 1_000_000_000)
    return _go_second(s, tz) % (f".{frac:09d}".rstrip("0") if frac else "")


@lru_cache(maxsize=64)
def _go_second(s: int, tz: timezone) -> str:
    dt = datetime.fromtimestamp(s, tz)
    off = dt.strftime("%z")
    off = "Z" if tz is UTC else f"{off[:3]}:{off[3:]}"
    return f"{dt:%Y-%m-%dT%H:%M:%S}%s{off}"


@lru_cache(maxsize=64)
def ruby_time(s: int) -> str:
    """Ruby's `Time#to_s` at the producers' offset: `2013-09-05 09:04:16 -0400`."""
    return f"{datetime.fromtimestamp(s, LOCAL):%Y-%m-%d %H:%M:%S %z}"


_NUMBER = re.compile(r"[0-9.eE+-]+")
# RFC 3339 (`T`, fraction up to nanoseconds, `Z` or an offset) and Ruby's `Time#to_s`.
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d):\d\d(?:\.\d+)? ?(Z|[+-]\d\d:?\d\d)")


def utc_minute(value: Any) -> datetime:
    """The UTC minute an event's `time` falls in, worked out here with `datetime`
    alone (not by tallyd's code): RFC 3339 up to nanoseconds, Ruby's form, Unix seconds."""
    if isinstance(value, int | float) or _NUMBER.fullmatch(value):
        seconds = math.floor(float(value))
        return datetime.fromtimestamp(seconds - seconds % 60, UTC)
    m = _STAMP.fullmatch(value)
    if m is None:
        raise ValueError(f"not a time: {value!r}")
    # The seconds cannot move the minute: the local minute and the offset decide it.
    return _utc_minute_of(*m.groups())


@lru_cache(maxsize=4096)
def _utc_minute_of(day: str, minute: str, offset: str) -> datetime:
    if offset == "Z":
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    return datetime.fromisoformat(f"{day}T{minute}:00{offset}").astimezone(UTC)


def utc_hour(value: Any) -> datetime:
    """The UTC hour an event's `time` falls in (see `utc_minute`)."""
    return utc_minute(value).replace(minute=0)


# --- The corpus ---------------------------------------------------------------------

# (type, share); `order` is the breakdown event (SPEC §2: order/status).
TYPES = [
    ("pageview", 0.80),
    ("order", 0.07),
    ("order.create", 0.015),
    ("order.update", 0.02),
    ("product.update", 0.02),
    ("request", 0.04),
    ("apievent", 0.025),
    ("load_avg", 0.01),
]
STATUSES = ["draft", "draft", "draft", "checkout", "closed"]  # the collector's test client
SYLLABLES = ["sa", "ja", "la", "ta", "ro", "ma", "no", "pi", "ne", "de", "to", "mi", "ca"]
SYLLABLES += ["lu", "na", "ve", "ra", "bo", "ti", "ka", "mo", "ri", "pe", "li", "za", "chi"]
SYLLABLES += ["co", "ba", "ya", "nu", "fe", "do", "ga", "le"]
SUFFIXES = ["", "", "", "", "store", "shop", "chile", "cl", "51", "-tienda", "-kids", "deco"]
BROWSERS = [
    ("Chrome", "Windows NT 6.1", "29.0.1547.66"),
    ("Chrome", "Intel Mac OS X 10_8_4", "29.0.1547.65"),
    ("Safari", "CPU iPhone OS 6_1_4 like Mac OS X", "6.0"),
    ("Safari", "Intel Mac OS X 10_8_4", "6.0.5"),
    ("Firefox", "Windows NT 6.1", "23.0"),
    ("Firefox", "Ubuntu", "23.0"),
    ("IE", "Windows NT 6.1", "10.0"),
    ("IE", "Windows NT 5.1", "8.0"),
    ("Android", "Linux; U; Android 4.1.2; es-cl; GT-I9300", "4.0"),
    ("Opera", "Windows NT 6.1", "12.16"),
]
UA = "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) {name}/{version} Safari/537.36"
CATEGORIES = [
    "Ropa",
    "Zapatillas",
    "Accesorios",
    "Decoración",
    "Niños",
    "Camión de juguete",
    "Diseño & Arte",
    "Baño",
    "Señoras",
    "Ofertas <3",
    "Hogar > Cocina",
    "Vinos",
    "Libros",
    "Electrónica",
    "Mascotas",
    "Joyas & Relojes",
    "Poleras",
    "Cuadernos",
]
PRODUCTS = [
    "Polera algodón orgánico",
    "Zapatillas running",
    "Camión de madera",
    "Mochila escolar niños",
    "Taza cerámica",
    "Cojín bordado",
    "Aros de plata",
    "Libreta A5 rayada",
    "Vestido lino",
    "Set de té",
]
QUERIES = [
    "?page=2",
    "?page=3&per_page=24",
    "?utm_source=facebook&utm_medium=social&utm_campaign=septiembre",
    "?utm_source=newsletter&utm_medium=email",
    "?q=polera+roja&sort=price",
    "?color=azul&size=M",
]
PAGES = [("/cart", "Carro de compras"), ("/pages/contacto", "Contacto"), ("/search", "Búsqueda")]
CHANGES = [["price"], ["stock"], ["price", "stock"], ["description", "images", "title"]]
API_CLIENTS = ["bootic_client.rb/0.0.11 (ruby 2.0.0)", "bootic-api-client-js/0.1.2", "curl/7.30.0"]
REFERRERS = [
    "http://www.google.cl/url?sa=t&rct=j&q=&esrc=s&source=web&cd=3&ved=0CDkQFjAC"
    "&url=http%3A%2F%2F{h}%2F&ei=Wo4oUsKcI4a49gSi8ICgBQ&usg=AFQjCNHd6sz5",
    "http://m.facebook.com/l.php?u=http%3A%2F%2F{h}%2F&h=AAQF8FZ9w",
    "http://www.bootic.net/shops?page=4",
    "http://{h}/",
]


def slug(text: str) -> str:
    table = str.maketrans("áéíóúñ", "aeioun")
    return re.sub(r"[^a-z0-9]+", "-", text.lower().translate(table)).strip("-")


SLUGS = {t: slug(t) for t in PRODUCTS + CATEGORIES}


def account_names(rng: random.Random, n: int = ACCOUNTS) -> list[str]:
    """`n` distinct shop subdomains, in the order of their popularity rank."""
    names: list[str] = []
    seen = {"bootic", "all"}
    while len(names) < n:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
        name += rng.choice(SUFFIXES)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


class _Producers:
    """The `data` maps of each kind of event; `random()` alone draws (it is the fast
    one), so a seed gives the same corpus on every run."""

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random
        self.getrandbits = rng.getrandbits

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def below(self, stop: int, start: int = 0) -> int:
        return start + int(self.random() * (stop - start))

    def browser(self, numeric: bool) -> dict[str, Any]:
        name, os, version = self.pick(BROWSERS)
        return {
            "name": name,
            "os": os,
            "version": float(version.split(".")[0]) if numeric else version,
        }

    def page(self, h: str) -> tuple[str, str, str]:
        """A page of a shop: its path, its URL (maybe with a query), its title."""
        r = self.random()
        if r < 0.15:
            path, title = "/", "Inicio"
        elif r < 0.55:
            title = self.pick(PRODUCTS)
            path = f"/products/{SLUGS[title]}-{self.below(10**6)}"
        elif r < 0.9:
            title = self.pick(CATEGORIES)
            path = f"/categories/{SLUGS[title]}"
        else:
            path, title = self.pick(PAGES)
        query = self.pick(QUERIES) if self.random() < 0.35 else ""
        return path, f"http://{h}{path}{query}", title

    def pageview(self, account: str, ns: int) -> dict[str, Any]:
        h = f"{account}.bootic.net" if self.random() < 0.85 else f"www.{account}.cl"
        path, url, title = self.page(h)
        ms = ns // 1_000_000 - self.below(60_000)  # the browser's own clock
        first = ms - self.below(30 * 86_400_000) if self.random() < 0.6 else ms
        return {
            "account": account,
            "app": "bootic_tracker_app",
            "_ts": str(ms),
            "browser": self.browser(numeric=False),
            "h": h,
            "path": path,
            "r": url,
            "ref": self.pick(REFERRERS).format(h=h) if self.random() < 0.45 else "",
            "tt": f"{title} | {account.capitalize()}",
            "tz": self.pick(("-3", "-4", "-4", "-5")),
            "unq": "1" if first == ms else "0",
            "user": f"{first}.{self.below(10_000):04d}",
        }

    def order(self, account: str) -> dict[str, Any]:
        items = self.below(6, 1)
        return {
            "account": account,
            "app": "bootic_checkout",
            "browser": self.browser(numeric=True),
            "currency": "CLP",
            "domain": f"{account}.bootic.net",
            "items": float(items),
            "resource_id": float(self.below(2_500_000, 300_000)),
            "status": self.pick(STATUSES),
            "title": self.pick(PRODUCTS),
            "total": float(items * self.below(600, 30) * 100 - 10),
            "tz": float(self.pick((-3, -4, -4))),
            "user": f"user-{self.below(10**6)}",
        }

    def product(self, account: str) -> dict[str, Any]:
        title = self.pick(PRODUCTS)
        return {
            "account": account,
            "app": "bootic_admin",
            "changes": self.pick(CHANGES),
            "collection": self.pick(CATEGORIES),
            "price": float(self.below(900, 20) * 100 - 10),
            "product_id": float(self.below(3_000_000, 100_000)),
            "shop_id": float(self.below(3000, 1)),
            "slug": SLUGS[title],
            "stock": float(self.below(40)),
            "title": title,
            "url": f"http://{account}.bootic.net/products/{SLUGS[title]}",
            "user": f"user-{self.below(10**5)}",
        }

    def request(self, account: str) -> dict[str, Any]:
        h = f"{account}.bootic.net"
        path, url, _ = self.page(h)
        return {
            "account": account,
            "app": "bootic_storefront",
            "h": h,
            "ip": f"190.{self.below(256)}.{self.below(256)}.{self.below(256)}",
            "method": "GET",
            "ms": round(math.exp(3.3 + 0.6 * (self.random() - 0.5) * 3.4), 2),
            "path": path,
            "status": float(self.pick((200, 200, 200, 200, 304, 404, 302))),
            "ua": UA.format(**self.browser(numeric=False)),
            "url": url,
        }

    def apievent(self, account: str) -> dict[str, Any]:
        return {
            "account": account,
            "app": "bootic_api",
            "client": self.pick(API_CLIENTS),
            "client_id": f"{self.getrandbits(96):024x}",
            "method": self.pick(("GET", "GET", "PUT", "POST")),
            "path": f"/v1/shops/{self.below(3000, 1)}/products?page={self.below(9, 1)}&per_page=50",
            "scope": "public admin",
            "status": float(self.pick((200, 200, 201, 422))),
            "token": f"{self.getrandbits(128):032x}",
        }

    def load_avg(self) -> dict[str, Any]:
        return {
            "account": "bootic",
            "app": "server_stats",
            "cpus": 8.0,
            "disk_free": float(self.below(90_000_000, 10_000_000)),
            "host": f"web-{self.below(7, 1)}.bootic.net",
            "load1": round(0.1 + 2.9 * self.random(), 2),
            "load15": round(0.1 + 1.9 * self.random(), 2),
            "load5": round(0.1 + 2.4 * self.random(), 2),
            "mem_free": float(self.below(4_000_000, 500_000)),
            "mem_total": 8_174_644.0,
            "net_in": float(self.below(900_000_000)),
            "net_out": float(self.below(4_000_000_000)),
            "procs": float(self.below(300, 120)),
            "swap_used": float(self.below(200)),
            "uptime": float(self.below(9_000_000, 2_000_000)),
            "version": "server_stats 0.2.1 (go1.1.2 linux/amd64)",
        }


def events(n: int, seed: int = SEED, *, untyped: float = 0.0) -> list[dict[str, Any]]:
    """`n` events (the maps a producer encoded), their times in order over four hours.
    `untyped`: the share left without a `type` (for tests: tallyd must reject them,
    and `expected_counts` leaves them out); such an event's frame starts with a space."""
    return list(iter_events(n, seed, untyped=untyped))


def iter_events(n: int, seed: int = SEED, *, untyped: float = 0.0) -> Iterator[dict[str, Any]]:
    """The events of `events(n, seed)` one by one, for corpora too large to hold as maps."""
    rng = random.Random(seed)
    names = account_names(rng)
    ranks = [1 / (k**1.07) for k in range(1, len(names) + 1)]
    accounts = rng.choices(names, weights=ranks, k=n)
    types = rng.choices([t for t, _ in TYPES], weights=[w for _, w in TYPES], k=n)
    gen = _Producers(rng)
    random_ = rng.random
    drop = random.Random(seed + 1).random
    start_ns = int(START.timestamp()) * 1_000_000_000
    slot = SPAN_SECONDS * 1_000_000_000 // max(n, 1)
    for i, (account, kind) in enumerate(zip(accounts, types, strict=True)):
        ns = start_ns + i * slot + int(random_() * slot)
        when: Any
        if kind == "pageview":
            data = gen.pageview(account, ns)
            # An older tracker sent Unix seconds (to the millisecond).
            when = ns // 1_000_000 / 1000 if random_() < 0.02 else go_time(ns, LOCAL)
        elif kind in ("order", "order.create", "order.update"):
            data, when = gen.order(account), ruby_time(ns // 1_000_000_000)
        elif kind == "product.update":
            data, when = gen.product(account), ruby_time(ns // 1_000_000_000)
        elif kind == "request":
            data, when = gen.request(account), go_time(ns, UTC)
        elif kind == "apievent":
            data, when = gen.apievent(account), go_time(ns, LOCAL)
        else:
            data, when = gen.load_avg(), float(ns // 1_000_000_000)
        if untyped and drop() < untyped:
            yield {"time": when, "data": data}
        else:
            yield {"type": kind, "time": when, "data": data}


# 2013-09-05T14:00:00Z: the start of the minimal stream's ten minutes.
MINIMAL_T0 = 1_378_389_600


def minimal_events(n: int, seq: bool = True) -> list[dict[str, Any]]:
    """tallyd's own minimal shape, the benchmarks' stream before this corpus:
    pageviews of 1,000 accounts in turn, integer times over ten minutes, a `seq`."""
    out = []
    for i in range(n):
        ev: dict[str, Any] = {
            "type": "pageview",
            "data": {"account": f"acct{i * 7919 % 1000}"},
            "time": MINIMAL_T0 + i * 600 // n,
        }
        if seq:
            ev["seq"] = i + 1
        out.append(ev)
    return out


def payload(event: dict[str, Any]) -> bytes:
    """One event as its producer put it on the bus: Go's JSON of the map."""
    return go_json(event).encode()


def json_frame(event: dict[str, Any]) -> bytes:
    """The Bootic publisher's frame: `<type> <json>`; no type, no topic (a leading space)."""
    return event.get("type", "").encode() + b" " + payload(event)


def json_frames(
    n: int, seed: int = SEED, *, untyped: float = 0.0, evs: Iterable[dict[str, Any]] | None = None
) -> list[bytes]:
    """One `<type> <json>` ZeroMQ frame per event: of `evs` if given, else of
    `events(n, seed, untyped=untyped)`."""
    evs = iter_events(n, seed, untyped=untyped) if evs is None else evs
    return [json_frame(ev) for ev in evs]


def msgpack_frames(
    n: int, seed: int = SEED, *, evs: Iterable[dict[str, Any]] | None = None
) -> list[bytes]:
    """The same maps as the 2013-14 bus carried them: `<type> <msgpack>`, every
    number a float64, strings in the old raw format (no str8, no bin)."""
    import msgpack

    evs = iter_events(n, seed) if evs is None else evs
    pack = msgpack.Packer(use_bin_type=False, autoreset=True).pack
    return [ev.get("type", "").encode() + b" " + pack(_floats(ev)) for ev in evs]


def _floats(value: Any) -> Any:
    if type(value) is dict:
        return {k: _floats(v) for k, v in value.items()}
    if type(value) is list:
        return [_floats(v) for v in value]
    return float(value) if type(value) is int else value


def http_bodies(
    n: int,
    per_body: int = 1000,
    seed: int = SEED,
    *,
    ndjson: bool = False,
    evs: list[dict[str, Any]] | None = None,
) -> list[bytes]:
    """POST bodies of `per_body` events each: a Go-encoded JSON array, or NDJSON."""
    evs = events(n, seed) if evs is None else evs
    out = []
    for i in range(0, len(evs), per_body):
        docs = [payload(ev) for ev in evs[i : i + per_body]]
        out.append(b"\n".join(docs) + b"\n" if ndjson else b"[" + b",".join(docs) + b"]")
    return out


@dataclass
class Counts:
    """What a store must hold after counting some events (the `all` rollup aside)."""

    totals: Counter[tuple[str, str]]  # (account, type) → events
    hours: Counter[tuple[str, str, datetime]]  # (account, type, UTC hour) → events

    @classmethod
    def empty(cls) -> Counts:
        return cls(Counter(), Counter())

    def add(self, event: dict[str, Any]) -> None:
        """Count one event as tallyd should; one without a type is rejected."""
        kind = event.get("type")
        if kind is not None:
            account = event["data"]["account"]
            self.totals[account, kind] += 1
            self.hours[account, kind, utc_hour(event["time"])] += 1

    def days(self) -> Counter[tuple[str, str, date]]:
        """(account, type, UTC day) → events."""
        out: Counter[tuple[str, str, date]] = Counter()
        for (account, kind, hour), k in self.hours.items():
            out[account, kind, hour.date()] += k
        return out

    def by_type(self) -> Counter[str]:
        """type → events: what the `all` rollup holds."""
        out: Counter[str] = Counter()
        for (_, kind), k in self.totals.items():
            out[kind] += k
        return out


def expected_counts(evs: Iterable[dict[str, Any]]) -> Counts:
    """Per (account, type) and per (account, type, UTC hour) totals, from the maps
    themselves; events without a type are left out (tallyd rejects them)."""
    counts = Counts.empty()
    for ev in evs:
        counts.add(ev)
    return counts


# --- --describe ---------------------------------------------------------------------


def time_form(value: Any) -> str:
    if not isinstance(value, str):
        return "Unix seconds (Go float, e.g. 1.378387063e+09)"
    if "T" not in value:
        return "Ruby Time#to_s (2013-09-05 18:04:16 -0400)"
    return "RFC 3339, UTC (…Z)" if value.endswith("Z") else "RFC 3339, -04:00, nanoseconds"


def describe(n: int, seed: int) -> str:
    evs = events(n, seed)
    docs = [payload(ev) for ev in evs]
    sizes = sorted(len(d) for d in docs)
    counts = expected_counts(evs)
    lines = [f"{n:,} events, seed {seed}: one `<type> <Go JSON>` frame each"]

    def pct(k: int) -> str:
        return f"{100 * k / n:5.1f}%"

    q = [sizes[min(n - 1, int(n * p))] for p in (0, 0.1, 0.5, 0.9, 0.99)] + [sizes[-1]]
    lines.append(
        "payload bytes: min {} p10 {} median {} p90 {} p99 {} max {}; mean {:.0f}".format(
            *q, sum(sizes) / n
        )
    )
    lines.append("types:")
    for kind, k in Counter(ev["type"] for ev in evs).most_common():
        lines.append(f"  {kind:<15} {pct(k)}")
    statuses = Counter(ev["data"]["status"] for ev in evs if ev["type"] == "order")
    lines.append("order status: " + ", ".join(f"{s} {k:,}" for s, k in statuses.most_common()))
    lines.append("time forms:")
    for form, k in Counter(time_form(ev["time"]) for ev in evs).most_common():
        lines.append(f"  {form:<46} {pct(k)}")
    per_account = Counter(ev["data"]["account"] for ev in evs)
    top = per_account.most_common()
    lines.append(
        f"accounts: {len(per_account):,} seen; the busiest {pct(top[0][1]).strip()}, "
        f"top 10 {pct(sum(k for _, k in top[:10])).strip()}, "
        f"top 100 {pct(sum(k for _, k in top[:100])).strip()}"
    )
    lines.append(f"(account, type) pairs: {len(counts.totals):,}")
    lines.append(
        f"UTC hours: {len({h for _, _, h in counts.hours})} "
        f"({min(h for _, _, h in counts.hours):%Y-%m-%d %H}h"
        f" to {max(h for _, _, h in counts.hours):%Y-%m-%d %H}h), "
        f"UTC days: {len({d for _, _, d in counts.days()})}"
    )
    escaped = sum(b"\\u00" in d for d in docs)
    non_ascii = sum(not d.isascii() for d in docs)
    exponent = sum(re.search(rb"\de[+-]\d\d", d) is not None for d in docs)
    lines.append(f"with \\u0026/\\u003c/\\u003e escapes: {pct(escaped)}")
    lines.append(f"with non-ASCII (raw UTF-8): {pct(non_ascii)}")
    lines.append(f"with a number in exponent form: {pct(exponent)}")
    lines.append(f"first frame: {evs[0]['type']} {docs[0].decode()}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--describe", action="store_true", help="print the corpus's statistics")
    ap.add_argument("-n", type=int, default=100_000, help="events (default 100,000)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    check()
    if not args.describe:
        ap.print_help()
        sys.exit(0)
    print(describe(args.n, args.seed))


if __name__ == "__main__":
    main()
