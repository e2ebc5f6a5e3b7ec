"""The README stays true: the settings table is exactly what ``conf.SETTINGS`` says, and the
quick start is exactly two commands. (tests/test_readme_live.py runs its curl blocks.)

Regenerate the settings table after changing ``conf.SETTINGS``::

    .venv/bin/python tests/test_readme.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from asyncqueue_django.conf import SETTINGS

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
README = README_PATH.read_text()
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def render_settings_table() -> str:
    """The table between the markers, one row per setting in ``SETTINGS`` order."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{n}` | `{json.dumps(s.default)}` | {s.doc} |" for n, s in SETTINGS.items()]
    return "\n".join(rows)


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


def test_the_table_is_the_generated_one() -> None:
    assert _table().removeprefix(START).strip() == render_settings_table(), (
        "run `python tests/test_readme.py` to regenerate the README's settings table"
    )


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    names = set(re.findall(r"^\| `([A-Z_]+)` \|", _table(), flags=re.MULTILINE))
    assert names == set(SETTINGS)


def test_quick_start_is_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in section.strip().splitlines()]
    assert commands == ["./dev up", "./dev test"]


if __name__ == "__main__":
    head, rest = README.split(START, 1)
    tail = rest.split(END, 1)[1]
    README_PATH.write_text(f"{head}{START}\n{render_settings_table()}\n{END}{tail}")
    print(f"{README_PATH}: settings table regenerated ({len(SETTINGS)} settings)")
