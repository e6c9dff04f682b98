"""Generated sections of the docs: a table between two markers, rewritten from the code.

The configuration reference (`tallyd.configdoc`) and the API reference
(`tallyd.apidoc`) each keep the prose around their markers; tests fail when the
checked-in section differs from what the code makes now.
"""

from __future__ import annotations


def between(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between its `begin` and `end` markers replaced by `body`."""
    head, found_begin, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found_begin or not found_end:
        raise ValueError(f"no {begin!r} ... {end!r} markers")
    return f"{head}{begin}\n{body}{end}{tail}"


def rewrite(path: str, begin: str, end: str, body: str) -> bool:
    """Put `body` between the markers of the file at `path`; whether it changed."""
    with open(path, encoding="utf-8") as fh:
        old = fh.read()
    new = between(old, begin, end, body)
    if new != old:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != old
