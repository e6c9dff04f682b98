"""The docs against the code: the configuration reference is the one `Config` makes."""

from __future__ import annotations

from tallyd import configdoc
from tallyd.config import FIELDS
from tests.conftest import REPO

CONFIGURATION = REPO / "docs" / "configuration.md"


def test_the_configuration_reference_is_the_codes() -> None:
    text = CONFIGURATION.read_text()
    assert configdoc.updated(text) == text, (
        "docs/configuration.md does not list the settings of tallyd/config.py: "
        f"run `.venv/bin/{configdoc.COMMAND}` and commit the result"
    )


def test_the_reference_has_a_row_per_setting() -> None:
    table = configdoc.reference()
    rows = table.splitlines()[2:]
    assert len(rows) == len(FIELDS)
    for row, name in zip(rows, FIELDS, strict=True):
        flag, variable, key = (cell.strip() for cell in row.split(" | ")[:3])
        assert flag.startswith(f"| `--{name.replace('_', '-')}`")
        assert (variable, key) == (f"`TALLYD_{name.upper()}`", f"`{name}`")
