"""Names that may have counts in the store (tallyd.seen), and badges' first views."""

from __future__ import annotations

import asyncio
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyd.keys import KeySpace
from tallyd.seen import SeenNames
from tallyd.stores.base import Batch
from tallyd.stores.sqlite import SQLiteStore
from tests.conftest import Server, wait_until
from tests.test_badge_errors import badge

pytestmark = pytest.mark.timeout(120)


def loaded() -> SeenNames:
    seen = SeenNames()
    seen.ready = True
    return seen


@given(st.lists(st.text(min_size=1, max_size=40), max_size=200))
@settings(max_examples=100, deadline=None)
def test_a_name_added_is_never_surely_absent(names: list[str]) -> None:
    seen = loaded()
    for name in names:
        seen.add(name)
    assert not any(seen.surely_absent(n) for n in names)


def test_an_owners_rollup_comes_with_its_accounts() -> None:
    seen = loaded()
    seen.add("octo/repo")
    assert not seen.surely_absent("octo/repo") and not seen.surely_absent("octo/*")
    assert seen.surely_absent("other/*")


def test_nothing_is_surely_absent_before_the_load() -> None:
    seen = SeenNames()
    assert not seen.surely_absent("anything")
    seen.ready = True
    assert seen.surely_absent("anything")


def test_few_names_never_added_read_as_maybe_at_200000_names() -> None:
    seen = loaded()
    rng = random.Random(7)

    def name() -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=12))

    for _ in range(200_000):
        seen.add(name())
    strangers = [name() + "!" for _ in range(20_000)]
    maybe = sum(not seen.surely_absent(n) for n in strangers)
    assert maybe < 20  # about 1 in 10,000 expected at this load


def test_the_load_lists_every_account_of_every_event(tmp_path: Path) -> None:
    async def run() -> SeenNames:
        store = SQLiteStore(f"sqlite:///{tmp_path}/t.db")
        await store.open()
        keys = KeySpace("")
        # More accounts than a page, names that need escaping, two events.
        pages = 2 * 1000 + 3
        members = {keys.accounts("hit"): {f"id{i}" for i in range(pages)}}
        members[keys.accounts("page%20view")] = {"a%2Fb", "caf%C3%A9"}
        members[keys.events] = {"hit", "page%20view"}
        await store.apply(Batch("n", 1, indexes=members))
        seen = SeenNames()
        seen.load_soon(store, keys)
        deadline = time.monotonic() + 30
        while not seen.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await store.close()
        return seen

    seen = asyncio.run(run())
    assert seen.ready
    for name in ("id0", "id1000", "id2002", "a/b", "a/*", "café"):
        assert not seen.surely_absent(name), name
    assert seen.surely_absent("id2003")


def test_a_restarted_server_still_shows_what_the_store_holds(
    server_factory: type[Server], tmp_path: Path, store_url: str
) -> None:
    server = server_factory(tmp_path, store=store_url).start()
    for _ in range(3):
        badge(server.get("/badge/old.svg"))
    assert server.post([{"event": "hit", "account": "posted/repo"}]).status_code == 202
    assert server.stop() == 0
    server = server_factory(tmp_path, store=store_url).start()
    # The first view anywhere starts the load; a first view while it runs reads.
    assert badge(server.get("/badge/new1.svg")).get("aria-label") == "hits: 1"
    assert badge(server.get("/badge/old.svg")).get("aria-label") == "hits: 4"
    assert badge(server.get("/badge/posted/repo.svg")).get("aria-label") == "hits: 2"
    # An owner's rollup counts its accounts though no index lists it.
    assert badge(server.get("/badge/posted/*.svg", increment="0")).get("aria-label") == "hits: 2"
    # Counted here by another route, then viewed: the view sees that count.
    assert server.post([{"event": "hit", "account": "later"}]).status_code == 202
    assert badge(server.get("/badge/later.svg")).get("aria-label") == "hits: 2"
    # Ids never seen, each of its metrics starting at 0.
    assert badge(server.get("/badge/fresh.svg", metric="today")).get("aria-label") == "hits: 1"
    assert badge(server.get("/badge/fresh.svg", metric="unique")).get("aria-label") == "hits: 1"
    assert badge(server.get("/badge/fresh.svg")).get("aria-label") == "hits: 3"
    assert badge(server.get("/badge/other.svg", increment="0")).get("aria-label") == "hits: 0"
    wait_until(lambda: total(server, "fresh"), 3)
    assert [total(server, a) for a in ("fresh", "other", "old", "all")] == [3, 0, 4, 12]


def total(server: Server, account: str) -> int:
    r = server.get(f"/api/stats/track/{account.replace('/', '%2F')}/hit")
    return int(r.json()["total"]) if r.status_code == 200 else 0


TOKEN = "s3cret-owner-token-0123456789"


def test_an_id_given_only_a_baseline_is_read_not_started_at_0(
    server_factory: type[Server], tmp_path: Path, store_url: str
) -> None:
    token = ("--admin-token", TOKEN)
    server = server_factory(tmp_path, *token, store=store_url).start()
    assert badge(server.get("/badge/warm.svg")).get("aria-label") == "hits: 1"  # loaded
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = server.client.put("/api/admin/moved/hit/baseline", json={"baseline": 1000}, headers=auth)
    assert r.status_code == 200, r.text
    assert badge(server.get("/badge/moved.svg")).get("aria-label") == "hits: 1,001"
    r = server.client.put("/api/admin/moved2/hit/baseline", json={"baseline": 500}, headers=auth)
    assert r.status_code == 200, r.text
    assert server.stop() == 0
    server = server_factory(tmp_path, *token, store=store_url).start()
    assert badge(server.get("/badge/warm.svg")).get("aria-label") == "hits: 2"
    time.sleep(0.5)  # the load of so small a store is done: the filter answers
    assert badge(server.get("/badge/moved2.svg")).get("aria-label") == "hits: 501"
    assert "moved2" in server.get("/api/accounts", event="hit").json()["accounts"]
