"""The README against the code: its first screen, its flags and its defaults."""

from __future__ import annotations

import argparse
import re

from tallyd.cli import parser
from tallyd.config import FIELDS, Config
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def fenced(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of Markdown `text`: (info string, body). tests/test_docs.py
    runs those whose info string says how (`sh loopback`, `nginx`, `ini`)."""
    return re.findall(r"^```([^`\n]*)\n(.*?)^```", text, re.S | re.M)


def first_screen() -> str:
    return README.split("\n## ", 1)[0]


def test_the_first_screen_gives_two_commands_run_and_test() -> None:
    screen = first_screen()
    assert len(screen.splitlines()) <= 30
    blocks = fenced(screen)
    assert [lang for lang, _ in blocks] == ["sh", "sh"]
    run, test = (body.strip() for _, body in blocks)
    assert "\n" not in run and run.endswith(".venv/bin/tallyd serve")
    assert test == "./scripts/test.sh"
    assert re.findall(r"\*\*(.+?)\*\*", screen) == ["Run it", "Test it"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_every_flag_the_readme_names_exists() -> None:
    known = {flag for sub in subcommands().values() for flag in sub._option_string_actions}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README))
    assert named and named <= known, named - known


def test_the_defaults_in_the_settings_table_are_the_codes() -> None:
    checked = []
    for row in re.findall(r"^\| `(--[a-z-]+)`[^|]*\| `([^`]*)` \|", README, re.M):
        flag, shown = row
        name = flag[2:].replace("-", "_")
        if name not in FIELDS:
            continue
        parse = FIELDS[name].metadata["parse"]
        assert parse.read(shown) == getattr(Config(), name), flag
        checked.append(name)
    assert {"store", "store_wait", "http", "flush_interval"} <= set(checked)
