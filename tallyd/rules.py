"""The limits of a valid event, shared by the full parser (`events`) and the
compiled fast path (`hotpath`), so the two can never disagree on them."""

from __future__ import annotations

# The longest account, event type, breakdown value or id, in characters.
MAX_NAME = 200
# Unix seconds past this are after year 9999: nothing sane, and datetime can't hold it.
MAX_TIME = 253402300799
# The rollup of every account: counted by tallyd itself, never sent by a producer.
ROLLUP = "all"
