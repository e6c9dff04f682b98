"""The store's key layout (SPEC §2), shared by every backend.

Account and event names are percent-encoded so that no name can contain the
separators used here ('/' inside counter keys, ':' after index prefixes). A
counter key always has at least one '/', an index key always one ':', so the
two families can never collide, whatever the input.
"""

from __future__ import annotations

from urllib.parse import quote

ROLLUP = "all"
# The field of a baseline hash (`KeySpace.baseline`) that holds the starting count.
BASELINE = "count"


def escape(name: str) -> str:
    """Percent-encode every character outside ``[A-Za-z0-9._~-]``."""
    return quote(name, safe="")


class KeySpace:
    """Builds every key tallyd writes, under an optional prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.events = f"{prefix}events"

    def counter(self, account: str, event: str, parts: tuple[str, ...] = ()) -> str:
        """`acme/pageview/2013/09`: a period hash; names already escaped."""
        return "/".join((self.prefix + account, event, *parts))

    def funnel(self, account: str, event: str, parts: tuple[str, ...]) -> str:
        """`funnels:acme/order/2013`: breakdown counts for a year or month."""
        return f"{self.prefix}funnels:" + "/".join((account, event, *parts))

    def accounts(self, event: str) -> str:
        """Every account ever seen for an event (a lexicographic index)."""
        return f"{self.prefix}accounts:{event}"

    def account_events(self, account: str) -> str:
        """Every event type an account has sent (a lexicographic index)."""
        return f"{self.prefix}events:{account}"

    def unique(self, account: str, event: str, parts: tuple[str, ...]) -> str:
        """`unique:acme/hit/2013/09/05`: a HyperLogLog of one day's distinct visitors."""
        return f"{self.prefix}unique:" + "/".join((account, event, *parts))

    def baseline(self, account: str, event: str) -> str:
        """`baseline:acme/hit`: a hash whose field `count` is the id's starting count,
        shown in its all-time total and in no period (set by an owner, tallyd.owner)."""
        return f"{self.prefix}baseline:{account}/{event}"

    def ranking(self, event: str, parts: tuple[str, ...]) -> str:
        """Accounts by count for one day (`Y, M, D`) or month (`Y, M`)."""
        return f"{self.prefix}top:{event}/" + "/".join(parts)
