"""Owner actions, behind the admin token: an id's baseline, resetting or deleting its counts.

An id is an account's event, as the stats API names it (a badge `owner/name` is
account `owner/name`, event `hit`). Off unless `--admin-token` is set; every
action is one log line naming the client, never the token. docs/owner-actions.md
tells what each action changes and what it leaves.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tallyd import openapi as doc
from tallyd.aggregator import Aggregator
from tallyd.badges.counts import BadgeCounts
from tallyd.events import Rejected, check_id_names
from tallyd.keys import BASELINE, KeySpace, escape
from tallyd.router import Answer, Params, Route
from tallyd.stats import Stats
from tallyd.stores.base import Edit, Store
from tallyd.web import (
    NO_STORE,
    HTTPError,
    Receive,
    Request,
    Response,
    client_address,
    json_response,
    read_body,
)

if TYPE_CHECKING:
    from tallyd.app import App

log = logging.getLogger("tallyd.owner")

# The largest baseline: what a JSON number holds exactly in every client.
MAX_BASELINE = 2**53 - 1
MAX_BODY = 1024
CHALLENGE = [(b"www-authenticate", b'Bearer realm="tallyd owner actions"')]


def _digest(token: bytes) -> bytes:
    # Compared as digests of equal length: compare_digest's time then depends on
    # neither the token's length nor where a guess first differs.
    return hashlib.sha256(token).digest()


@dataclass(frozen=True)
class Gate:
    """Whether a request carries the admin token; the token is never repeated."""

    token: str = field(repr=False)

    def check(self, req: Request) -> None:
        """Raise 403 when owner actions are off, 401 without a bearer token, 403 with
        a wrong one."""
        if not self.token:
            raise HTTPError(
                403,
                "owner_actions_off",
                "owner actions are off: start tallyd with --admin-token "
                "(or TALLYD_ADMIN_TOKEN) to allow them",
            )
        scheme, _, given = req.headers.get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            raise HTTPError(
                401, "missing_token", "send Authorization: Bearer <admin token>", CHALLENGE
            )
        if not hmac.compare_digest(_digest(given.strip()), _digest(self.token.encode())):
            raise HTTPError(403, "bad_token", "the admin token is not the one set")


@dataclass
class Owner:
    """The owner actions of one tallyd process."""

    gate: Gate
    stats: Stats
    aggregator: Aggregator
    badges: BadgeCounts

    async def baseline(self, req: Request, receive: Receive, account: str, event: str) -> Response:
        """`PUT /api/admin/{account}/{event}/baseline` with `{"baseline": N}`."""
        self.gate.check(req)
        _id(account, event)
        value = _baseline(await read_body(req, receive, MAX_BODY))
        await self._apply(req, "baseline", account, event, value)
        return _ok({"account": account, "event": event, "action": "baseline", "baseline": value})

    async def reset(self, req: Request, account: str, event: str) -> Response:
        """`DELETE /api/admin/{account}/{event}/counts`: every count and the baseline
        gone, the id still listed."""
        return await self._erase(req, "reset", account, event)

    async def delete(self, req: Request, account: str, event: str) -> Response:
        """`DELETE /api/admin/{account}/{event}`: as a reset, and out of the listings."""
        return await self._erase(req, "delete", account, event)

    async def _erase(self, req: Request, action: str, account: str, event: str) -> Response:
        self.gate.check(req)
        _id(account, event)
        change = await self._apply(req, action, account, event, 0)
        body = {"account": account, "event": event, "action": action, "keys": len(change.drop)}
        return _ok(body)

    async def _apply(
        self, req: Request, action: str, account: str, event: str, baseline: int
    ) -> Edit:
        """Make and apply an action's change after every count that came before it,
        with no batch written meanwhile; then forget what this process remembers of
        the id. One log line."""
        store, keys = self.stats.store, self.stats.keys
        try:
            async with self.aggregator.exclusive():
                if action == "baseline":
                    ea, ee = escape(account), escape(event)
                    # Listed as an id with counts, as its first hit would list it: a
                    # badge's first view reads only ids listed (tallyd.seen).
                    listed = [(keys.events, ee), (keys.accounts(ee), ea)]
                    listed.append((keys.account_events(ea), ee))
                    change = Edit(
                        fields={keys.baseline(ea, ee): {BASELINE: baseline}},
                        listed=listed if baseline else [],
                    )
                else:
                    change = await stored_keys(store, keys, account, event, action == "delete")
                await store.edit(change)
                if action == "delete":
                    self.aggregator.forget()
                elif action == "baseline":
                    self.badges.new_names.remember(account)
                self.badges.forget(account, event)
        except TimeoutError:
            raise HTTPError(
                503,
                "store_unavailable",
                "the counts that came before this action are not written yet; try again",
                [(b"retry-after", b"5")],
            ) from None
        except OSError as exc:  # the journal (--durable) cannot be written
            raise HTTPError(503, "not_durable", str(exc), [(b"retry-after", b"5")]) from None
        what = f" to {baseline}" if action == "baseline" else f" ({len(change.drop)} keys)"
        who = client_address(req.scope.get("client"), req.headers.get(b"x-forwarded-for", b""))
        log.info("owner action: %s of %r event %r%s by %s", action, account, event, what, who)
        return change


async def stored_keys(store: Store, keys: KeySpace, account: str, event: str, forget: bool) -> Edit:
    """What an id holds in the store, as the change that takes it away.

    Its counter hashes are found by walking them down from all time (each hash's
    fields name the ones below it), so no store needs a scan of its keys; hour
    hashes are named by their day's fields. With them go its funnels, visitor
    sketches, baseline and ranking entries, and (`forget`) its index entries. The
    rollups (`all`, `owner/*`) keep the events they counted.
    """
    ea, ee = escape(account), escape(event)
    base = keys.counter(ea, ee)
    drop = [base, keys.baseline(ea, ee)]
    members: list[tuple[str, str]] = []
    level: list[tuple[str, ...]] = [()]
    for depth in range(3):  # years, months, days
        hashes = (await store.read([keys.counter(ea, ee, p) for p in level], "")).hashes
        level = [(*p, f) for p, h in zip(level, hashes, strict=True) for f in h if f.isdigit()]
        drop += [keys.counter(ea, ee, p) for p in level]
        if depth < 2:
            drop += [keys.funnel(ea, ee, p) for p in level]
        if depth > 0:
            members += [(keys.ranking(ee, p), ea) for p in level]
        if depth == 2:
            drop += [keys.unique(ea, ee, p) for p in level]
    hashes = (await store.read([keys.counter(ea, ee, p) for p in level], "")).hashes
    drop += [keys.counter(ea, ee, (*p, h)) for p, fs in zip(level, hashes, strict=True) for h in fs]
    if forget:
        members += [(keys.accounts(ee), ea), (keys.account_events(ea), ee)]
    return Edit(drop=drop, members=members)


def _id(account: str, event: str) -> None:
    """Raise 400 unless the names are an id's: valid, and no rollup."""
    try:
        check_id_names(account, event)
    except Rejected as exc:
        raise HTTPError(400, exc.reason, exc.detail) from None


def _baseline(body: bytes) -> int:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    # Nothing but the baseline: a body that says more is a mistake (`{"base": 5}`), and
    # what is documented then fits well within MAX_BODY.
    value = doc.get("baseline") if isinstance(doc, dict) and len(doc) == 1 else None
    if type(value) is float and value.is_integer():
        # JSON has one kind of number: 5.0 is the whole number 5 (JSON Schema agrees).
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_BASELINE:
        raise HTTPError(
            400,
            "bad_baseline",
            f'send {{"baseline": N}}, N a whole number 0..{MAX_BASELINE} (0 removes it)',
        )
    return value


def _ok(body: dict[str, object]) -> Response:
    return json_response(body, 200, [NO_STORE])


# -- routes (tallyd/routes.py) ------------------------------------------------------


async def _put_baseline(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await app.owner.baseline(req, receive, params["account"], params["event"])


async def _reset(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await app.owner.reset(req, params["account"], params["event"])


async def _delete(app: App, req: Request, receive: Receive, params: Params) -> Answer:
    return await app.owner.delete(req, params["account"], params["event"])


def _operation(summary: str, body: bool) -> dict[str, Any]:
    error = {"description": "", "content": {"application/json": {"schema": ERROR}}}
    answer = {
        "type": "object",
        "required": ["account", "event", "action"],
        "properties": {
            "account": {"type": "string"},
            "event": {"type": "string"},
            "action": {"enum": ["baseline", "reset", "delete"]},
            "baseline": BASELINE_SCHEMA,
            "keys": {"type": "integer", "minimum": 0},
        },
    }
    responses = {
        "200": {"description": "done", "content": {"application/json": {"schema": answer}}},
        "400": {**error, "description": "names that are no id, or a body that is no baseline"},
        "401": {
            **error,
            "description": "no bearer token",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        "403": {**error, "description": "owner actions off (no --admin-token), or a wrong token"},
        "404": {**error, "description": "no such path"},
        "503": {**error, "description": "the counts before the action are not written yet"},
    }
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{doc.ADMIN_SCHEME: []}],
        "responses": responses,
    }
    if body:
        responses["413"] = {**error, "description": "a body past 1 KiB"}
        schema = {
            "type": "object",
            "required": ["baseline"],
            "additionalProperties": False,
            "properties": {"baseline": BASELINE_SCHEMA},
        }
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


ERROR = {"$ref": "#/components/schemas/Error"}
BASELINE_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_BASELINE}
_ID = "/api/admin/{account}/{event}"
ROUTES = [
    Route(
        _ID + "/baseline",
        "PUT",
        _put_baseline,
        _operation("Set an id's baseline: in its all-time total, in no period", True),
        (doc.ACCOUNT_NAME, doc.EVENT_NAME),
    ),
    Route(
        _ID + "/counts",
        "DELETE",
        _reset,
        _operation("Reset an id's counts to zero; it stays listed", False),
        (doc.ACCOUNT_NAME, doc.EVENT_NAME),
    ),
    Route(
        _ID,
        "DELETE",
        _delete,
        _operation("Delete an id: its counts and its index and ranking entries", False),
        (doc.ACCOUNT_NAME, doc.EVENT_NAME),
    ),
]
