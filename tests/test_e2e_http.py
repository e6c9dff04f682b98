"""End to end: a real `tallyd serve`, 10,000 events over two years, every answer checked."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
import pytest

from tallyd.periods import days_in_month
from tests.conftest import Server

pytestmark = pytest.mark.timeout(300)

ACCOUNTS = ["acme", "benwilber/bashids", "café", "x:y*%"]
STATUSES = ["paid", "pending", "failed"]
START = datetime(2013, 1, 1, tzinfo=UTC)
SPAN = (datetime(2015, 1, 1, tzinfo=UTC) - START).total_seconds()
# UTC windows around the DST changes of both zones tested.
DST_WINDOWS = [
    datetime(2013, 3, 31, 0, tzinfo=UTC),
    datetime(2013, 10, 27, 0, tzinfo=UTC),
    datetime(2013, 3, 10, 6, tzinfo=UTC),
    datetime(2013, 11, 3, 5, tzinfo=UTC),
    datetime(2014, 3, 30, 0, tzinfo=UTC),
    datetime(2014, 10, 26, 0, tzinfo=UTC),
]

Event = tuple[str, str, float, str | None]


def make_events(n: int, seed: int) -> list[Event]:
    rnd = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        if i % 10 == 0:
            base = rnd.choice(DST_WINDOWS)
            ts = base.timestamp() + rnd.uniform(0, 4 * 3600)
        else:
            ts = START.timestamp() + rnd.uniform(0, SPAN)
        account = rnd.choices(ACCOUNTS, weights=[6, 3, 2, 1])[0]
        if rnd.random() < 0.25:
            out.append((account, "order", ts, rnd.choice(STATUSES)))
        else:
            out.append((account, "pageview", ts, None))
    return out


def wire(ev: Event, i: int) -> dict[str, Any]:
    account, event, ts, status = ev
    form = i % 4
    when: Any
    if form == 0:
        when = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    elif form == 1:
        when = datetime.fromtimestamp(ts, ZoneInfo("Asia/Kolkata")).isoformat()
    elif form == 2:
        when = ts
    else:
        when = int(ts) if ts == int(ts) else ts
    if i % 2:
        data: dict[str, Any] = {"account": account}
        if status:
            data["status"] = status
        return {"type": event, "data": data, "time": when}
    flat: dict[str, Any] = {"event": event, "account": account, "time": when}
    if status:
        flat["status"] = status
    return flat


class Reference:
    """The expected answers, computed independently with zoneinfo."""

    def __init__(self, events: list[Event], tz: str) -> None:
        zone = ZoneInfo(tz)
        self.periods: dict[tuple[str, str, tuple[int, ...]], Counter[int]] = defaultdict(Counter)
        self.funnels: dict[tuple[str, str, tuple[int, ...]], Counter[str]] = defaultdict(Counter)
        self.top_day: dict[tuple[int, int, int], Counter[str]] = defaultdict(Counter)
        self.top_month: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
        self.hours: set[tuple[int, int, int, int]] = set()
        for account, event, ts, status in events:
            d = datetime.fromtimestamp(ts, zone)
            chain = (d.year, d.month, d.day, d.hour, d.minute)
            for who in (account, "all"):
                for depth in range(5):
                    self.periods[(who, event, chain[:depth])][chain[depth]] += 1
                if status:
                    self.funnels[(who, event, chain[:1])][status] += 1
                    self.funnels[(who, event, chain[:2])][status] += 1
            if event == "pageview":
                self.top_day[chain[:3]][account] += 1
                self.top_month[chain[:2]][account] += 1
                self.hours.add(chain[:4])  # type: ignore[arg-type]


def path(account: str, event: str, parts: tuple[int, ...], pad: bool = True) -> str:
    text = "/".join(f"{p:02d}" if pad else str(p) for p in parts)
    base = f"/api/stats/track/{quote(account, safe='')}/{event}"
    return f"{base}/{text}" if parts else base


def check_period(
    server: Server,
    ref: Reference,
    account: str,
    event: str,
    parts: tuple[int, ...],
    pad: bool = True,
) -> None:
    r = server.get(path(account, event, parts, pad))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store, no-cache, must-revalidate, private"
    got = r.json()
    counts = ref.periods.get((account, event, parts), Counter())
    if not parts:
        segments = list(range(min(counts), max(counts) + 1))
    elif len(parts) == 1:
        segments = list(range(1, 13))
    elif len(parts) == 2:
        segments = list(range(1, days_in_month(*parts) + 1))
    else:
        segments = list(range(24 if len(parts) == 3 else 60))
    assert got["data"] == {str(s): counts.get(s, 0) for s in segments}, (account, event, parts)
    assert got["total"] == sum(counts.values())
    names = ("year", "month", "day", "hour")
    assert [got[n] for n in names] == [*parts, *([None] * (4 - len(parts)))]
    assert got["account"] == account and got["event"] == event


def check_everything(server: Server, ref: Reference, rnd: random.Random, days: bool = True) -> None:
    for account in [*ACCOUNTS, "all"]:
        for event in ("pageview", "order"):
            check_period(server, ref, account, event, ())
            for year in (2013, 2014):
                check_period(server, ref, account, event, (year,))
                for month in range(1, 13):
                    check_period(server, ref, account, event, (year, month), pad=month % 2 == 0)
                    if days and (event == "pageview" or account == "all"):
                        for day in range(1, days_in_month(year, month) + 1):
                            check_period(server, ref, account, event, (year, month, day))
                    r = server.get(
                        f"/api/stats/funnels/{quote(account, safe='')}/{event}/{year}/{month}"
                    )
                    assert r.json()["data"] == dict(
                        ref.funnels.get((account, event, (year, month)), {})
                    )
                r = server.get(f"/api/stats/funnels/{quote(account, safe='')}/{event}/{year}")
                want = ref.funnels.get((account, event, (year,)), Counter())
                assert r.json()["data"] == dict(want) and r.json()["total"] == sum(want.values())
    hours = sorted(ref.hours)
    for y, m, d, h in rnd.sample(hours, 40) + [
        x for x in hours if (x[1], x[2]) in ((3, 31), (10, 27), (3, 10), (11, 3))
    ]:
        for account in ("all", rnd.choice(ACCOUNTS)):
            check_period(server, ref, account, "pageview", (y, m, d))
            check_period(server, ref, account, "pageview", (y, m, d, h))
    for (y, m, d), counts in rnd.sample(sorted(ref.top_day.items()), 30):
        r = server.get(
            "/api/top", event="pageview", period="day", date=f"{y}-{m:02d}-{d:02d}", limit="3"
        )
        want = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert [(t["account"], t["count"]) for t in r.json()["top"]] == want
    for (y, m), counts in ref.top_month.items():
        r = server.get("/api/top", event="pageview", period="month", date=f"{y}-{m:02d}")
        want = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        assert [(t["account"], t["count"]) for t in r.json()["top"]] == want


@pytest.mark.parametrize(
    "tz, backend",
    [
        ("Europe/Madrid", "sqlite"),
        ("America/New_York", "sqlite"),
        ("Europe/Madrid", "redis"),
        ("America/New_York", "redis+cluster"),
    ],
)
def test_ten_thousand_events_every_answer_exact(
    server_factory: type[Server],
    tmp_path: Any,
    tz: str,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    events = make_events(10_000, seed=sum(map(ord, tz)))
    # Retention off: these events are from 2013, and Redis would expire their hours at once.
    args = ["--timezone", tz, "--retention-minutes", "0", "--retention-hours", "0"]
    fixture = {"redis": "redis_url", "redis+cluster": "cluster_url"}.get(backend)
    store = request.getfixturevalue(fixture) if fixture else None
    server = server_factory(tmp_path, *args, store=store).start()
    docs = [wire(ev, i) for i, ev in enumerate(events)]
    for i in range(0, len(docs), 1000):
        chunk = docs[i : i + 1000]
        if i % 2000:
            r = server.client.post(
                "/api/events", content=b"\n".join(orjson.dumps(d) for d in chunk)
            )
        else:
            r = server.post(chunk)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == len(chunk)
    ref = Reference(events, tz)
    rnd = random.Random(7)
    check_everything(server, ref, rnd)

    r = server.get("/api/accounts", event="pageview", limit="2")
    first = r.json()
    assert first["accounts"] == sorted(ACCOUNTS, key=lambda a: quote(a, safe=""))[:2]
    r = server.get("/api/accounts", event="pageview", after=first["next"])
    assert first["accounts"] + r.json()["accounts"] == sorted(
        ACCOUNTS, key=lambda a: quote(a, safe="")
    )
    assert server.get("/api/stats/track").json()["events"] == ["order", "pageview"]
    assert server.get(f"/api/stats/track/{quote('café')}").json()["events"] == ["order", "pageview"]

    # A restart keeps every count (days are covered by the months they sum to).
    server.restart()
    check_everything(server, ref, rnd, days=False)
    log = server.log.read_text()
    assert "every count written" in log and "Traceback" not in log


def test_series_crosses_boundaries_and_zero_fills(
    server_factory: type[Server], tmp_path: Any
) -> None:
    # Retention off: the minute and hour points below are years old.
    args = ["--retention-minutes", "0", "--retention-hours", "0"]
    server = server_factory(tmp_path, *args).start()
    times = [
        "2013-12-31T23:59:00Z",
        "2014-01-01T00:00:30Z",
        "2014-01-01T00:01:00Z",
        "2014-01-03T10:00:00Z",
    ]
    assert (
        server.post([{"event": "pv", "account": "a", "time": t} for t in times]).status_code == 202
    )
    r = server.get(
        "/api/stats/series",
        account="a",
        event="pv",
        interval="day",
        **{"from": "2013-12-30", "to": "2014-01-04"},
    )
    got = r.json()
    assert [(p["time"], p["count"]) for p in got["points"]] == [
        ("2013-12-30", 0),
        ("2013-12-31", 1),
        ("2014-01-01", 2),
        ("2014-01-02", 0),
        ("2014-01-03", 1),
        ("2014-01-04", 0),
    ]
    assert got["total"] == 4
    r = server.get(
        "/api/stats/series",
        account="a",
        event="pv",
        interval="minute",
        **{"from": "2013-12-31T23:58", "to": "2014-01-01T00:01"},
    )
    assert [p["count"] for p in r.json()["points"]] == [0, 1, 1, 1]
    r = server.get(
        "/api/stats/series",
        account="all",
        event="pv",
        interval="month",
        format="csv",
        **{"from": "2013-11-01", "to": "2014-02-01"},
    )
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text == "time,count\n2013-11,0\n2013-12,1\n2014-01,3\n2014-02,0\n"
    r = server.get(
        "/api/stats/series",
        account="a",
        event="pv",
        interval="hour",
        **{"from": "2014-01-03T09:00", "to": "2014-01-03T11:00"},
    )
    assert [(p["time"], p["count"]) for p in r.json()["points"]] == [
        ("2014-01-03T09:00", 0),
        ("2014-01-03T10:00", 1),
        ("2014-01-03T11:00", 0),
    ]
    r = server.get(
        "/api/stats/series",
        account="a",
        event="pv",
        interval="year",
        **{"from": "2012-05-01", "to": "2014-06-01"},
    )
    assert [(p["time"], p["count"]) for p in r.json()["points"]] == [
        ("2012", 0),
        ("2013", 1),
        ("2014", 3),
    ]


def test_links_and_jsonp(server_factory: type[Server], tmp_path: Any) -> None:
    # Hours kept forever: the day followed below is years old.
    server = server_factory(tmp_path, "--retention-hours", "0").start()
    server.post(
        {
            "type": "pageview",
            "data": {"account": "benwilber/bashids"},
            "time": "2013-02-16T10:00:00Z",
        }
    )
    got = server.get("/api/stats/track/benwilber%2Fbashids/pageview/2013/2").json()
    links = got["links"]
    assert links["self"] == "/api/stats/track/benwilber%2Fbashids/pageview/2013/02"
    assert links["up"] == "/api/stats/track/benwilber%2Fbashids/pageview/2013"
    assert links["segments"][0] == "/api/stats/track/benwilber%2Fbashids/pageview/2013/02/01"
    assert len(links["segments"]) == 28
    assert server.get(links["segments"][15]).json()["data"]["10"] == 1
    r = server.get("/api/stats/track/all/pageview/2013", callback="jQuery.cb_1")
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.text.startswith("/**/jQuery.cb_1(") and r.text.endswith(");")
    assert orjson.loads(r.text[len("/**/jQuery.cb_1(") : -2])["data"]["2"] == 1


def test_receive_time_when_absent(server: Server) -> None:
    before = datetime.now(UTC)
    server.post({"event": "now", "account": "a"})
    after = datetime.now(UTC)
    got = server.get("/api/stats/track/a/now").json()
    assert got["total"] == 1
    assert list(got["data"]) in ([str(before.year)], [str(after.year)])
    minute = server.get(
        f"/api/stats/track/a/now/{before.year}/{before.month}/{before.day}/{before.hour}"
    )
    if (before.hour, before.minute) == (after.hour, after.minute):
        assert minute.json()["data"][str(before.minute)] == 1
