from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tallyd.keys import KeySpace, escape

names = st.text(min_size=1, max_size=30).filter(
    lambda s: not any("\ud800" <= c <= "\udfff" for c in s)
)


def test_escape_matches_the_seed() -> None:
    assert escape("benwilber/bashids") == "benwilber%2Fbashids"
    assert escape("a-b_c.d~e") == "a-b_c.d~e"
    assert escape("x:y*%") == "x%3Ay%2A%25"
    assert escape("café") == "caf%C3%A9"


def test_layout() -> None:
    k = KeySpace()
    assert k.counter("acme", "pageview", ("2013", "09")) == "acme/pageview/2013/09"
    assert k.funnel("acme", "order", ("2013",)) == "funnels:acme/order/2013"
    assert KeySpace("t:").counter("acme", "pageview") == "t:acme/pageview"


@given(names, names, names, names)
def test_distinct_names_never_share_a_key(a1: str, e1: str, a2: str, e2: str) -> None:
    k = KeySpace()
    parts = ("2013", "09")
    if (a1, e1) != (a2, e2):
        assert k.counter(escape(a1), escape(e1), parts) != k.counter(escape(a2), escape(e2), parts)
    # Escaped names hold no separator, so a counter key can't pose as an index key.
    key = k.counter(escape(a1), escape(e1), parts)
    assert ":" not in key and key.count("/") == 3
