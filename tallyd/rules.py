"""The limits of a valid event, shared by the full parser (`events`) and the
compiled fast path (`hotpath`), so the two can never disagree on them."""

from __future__ import annotations

# The longest account, event type, breakdown value or id, in characters.
MAX_NAME = 200
# The last Unix second counted, 9999-12-31T09:59:59Z: past it, the local date in a
# zone 14 hours ahead of UTC is in year 10000, which no date type here can hold.
MAX_TIME = 253402250399
# The rollup of every account: counted by tallyd itself, never sent by a producer.
ROLLUP = "all"
# An account with a `/` also counts for its owner's rollup, `owner/*` (the part
# before the first `/`): `benwilber/bashids` counts for `benwilber/*` too.
PREFIX_ROLLUP = "/*"


def reserved(account: str) -> bool:
    """Whether an account name is a rollup's: counted by tallyd, never sent."""
    return account == ROLLUP or account.endswith(PREFIX_ROLLUP)


def prefix_rollup(account: str) -> str | None:
    """The owner's rollup an account also counts for, or None (no `/` in it)."""
    owner, slash, _ = account.partition("/")
    return owner + PREFIX_ROLLUP if slash else None


def includes(reader: str, account: str) -> bool:
    """Whether the count of account `reader` includes the events of `account`:
    `all` every account's, `owner/*` those under `owner/`, any other its own."""
    if reader == ROLLUP:
        return True
    if reader.endswith(PREFIX_ROLLUP):
        return prefix_rollup(account) == reader
    return account == reader
