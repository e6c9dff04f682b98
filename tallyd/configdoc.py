"""The configuration reference, written from `Config` itself: `tallyd config --reference`.

Every field gives one row: its flag and aliases, its `TALLYD_*` variable, its TOML
key, its default and its help. `--write FILE` puts the table between the markers
of FILE (docs/configuration.md), keeping the prose around it; a test fails when
the checked-in table differs from this one.
"""

from __future__ import annotations

from dataclasses import MISSING, Field
from typing import Any

from tallyd.config import FIELDS, _flag, _variable
from tallyd.generated import between, rewrite

BEGIN = "<!-- BEGIN config reference: made by `tallyd config --reference`, do not edit -->"
END = "<!-- END config reference -->"
COMMAND = "tallyd config --reference --write docs/configuration.md"


def default_of(f: Field[Any]) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]


def shown(value: Any) -> str:
    """A default as it would be written in a flag or variable; empty as `""`."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "none"
    text = str(value)
    return f"`{text}`" if text else '`""`'


def _cell(text: str) -> str:
    for char in "\\|*<":
        text = text.replace(char, "\\" + char)
    return text


def reference() -> str:
    """The Markdown table of every setting, in `Config`'s order."""
    lines = [
        "| flag | variable | TOML key | default | |",
        "|---|---|---|---|---|",
    ]
    for name, f in FIELDS.items():
        flags = ", ".join(f"`{n}`" for n in [_flag(name), *f.metadata.get("aliases", [])])
        parse = f.metadata["parse"]
        if parse.switch:
            flags += " (no value)"
        elif parse.repeatable and "repeatable" not in f.metadata["help"]:
            flags += " (repeatable)"
        lines.append(
            f"| {flags} | `{_variable(name)}` | `{name}` | {shown(default_of(f))} "
            f"| {_cell(f.metadata['help'])} |"
        )
    return "\n".join(lines) + "\n"


def updated(text: str) -> str:
    """`text` with the reference between its markers replaced by the current one."""
    return between(text, BEGIN, END, reference())


def write(path: str) -> bool:
    """Rewrite the reference in the file at `path`; whether it changed."""
    return rewrite(path, BEGIN, END, reference())
