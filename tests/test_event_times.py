"""An event whose time is out of range is refused whichever reader takes it, even for an
account and event already known (the decoded-object path of `hotpath.Counter`)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("time", [1e300, -5, -0.5, "1969-12-31T23:59:59Z", "nonsense"])
def test_a_bad_time_is_refused_for_a_known_name(server: Server, time: object) -> None:
    assert server.post({"event": "e", "account": "known"}, wait="flush").status_code == 202
    for body in (
        {"event": "e", "account": "known", "time": time},
        [{"event": "e", "account": "known", "time": time}],
    ):
        r = server.post(body, wait="flush")
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["reason"] == "bad_time"
    with sqlite3.connect(server.db) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM counters WHERE key LIKE 'known/%'")]
    assert keys and all("/1969" not in k for k in keys), keys
    assert server.get("/api/stats/track/known/e").json()["total"] == 1
