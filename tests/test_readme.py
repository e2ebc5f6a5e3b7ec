"""The README stays true: every setting has a row with its default, and the quick start is
exactly two commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from asyncqueue_django.conf import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _table() -> str:
    start = README.index("<!-- settings-table:start -->")
    end = README.index("<!-- settings-table:end -->")
    return README[start:end]


def test_every_setting_has_a_row_with_its_default_and_doc() -> None:
    table = _table()
    for name, spec in SETTINGS.items():
        default = json.dumps(spec.default)
        row = f"| `{name}` | `{default}` | {spec.doc} |"
        assert row in table, f"README settings table is missing or stale for {name}"


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    names = set(re.findall(r"^\| `([A-Z_]+)` \|", _table(), flags=re.MULTILINE))
    assert names == set(SETTINGS)


def test_quick_start_is_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in section.strip().splitlines()]
    assert commands == ["./dev up", "./dev test"]
