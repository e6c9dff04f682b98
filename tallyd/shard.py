"""Which node (and which worker) counts an event from the shared bus (`--shard i/N`).

An account belongs to shard `crc32(UTF-8 bytes) % N`: the same on every platform,
Python version and process (Python's own `hash` of a string is salted per process).
Every event of an account lands on one node, so the counts of that account, and
each node's share of the `all` rollup, are added by one writer only.

`--workers W` on a node that is shard i of N splits its share once more by the same
rule: worker w counts the accounts with `crc32 % (N*W) == i + N*w`, a subset of
shard i, and the W workers together count exactly shard i.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

# Accounts whose answer is remembered before the memo starts over (bounded memory).
MEMO_MAX = 100_000


def shard_of(account: str, count: int) -> int:
    """The shard (0 … count-1) an account belongs to."""
    return zlib.crc32(account.encode("utf-8", "surrogatepass")) % count


@dataclass
class Shard:
    """Shard `index` of `count`; `owns(account)` answers from a memo after the first time."""

    index: int
    count: int
    memo: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, text: str) -> Shard | None:
        """`"i/N"` (0 ≤ i < N) → a Shard; `""` or `"0/1"` → None (count everything)."""
        if not text:
            return None
        index, sep, count = text.partition("/")
        if not (sep and index.isdigit() and count.isdigit()):
            raise ValueError(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/3")
        i, n = int(index), int(count)
        if n < 1:
            raise ValueError(f"--shard {text!r}: the count must be 1 or more")
        if not 0 <= i < n:
            raise ValueError(f"--shard {text!r}: the index must be 0 to {n - 1}")
        return None if n == 1 else cls(i, n)

    def split(self, worker: int, workers: int) -> Shard:
        """Worker `worker`'s part of this shard when `workers` share it."""
        return Shard(self.index + self.count * worker, self.count * workers)

    def owns(self, account: str) -> bool:
        mine = self.memo.get(account)
        if mine is None:
            if len(self.memo) >= MEMO_MAX:
                self.memo.clear()
            mine = self.memo[account] = shard_of(account, self.count) == self.index
        return mine

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def for_worker(text: str, worker: int, workers: int) -> Shard | None:
    """The bus share of one worker of a node started with `--shard text`."""
    node = Shard.parse(text) or Shard(0, 1)
    return node.split(worker, workers) if workers > 1 else Shard.parse(text)
