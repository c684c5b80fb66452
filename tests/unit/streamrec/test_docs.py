"""The documents stay true to the code: the settings table is what `streamrec
settings --markdown` prints, and the README's links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from streamrec.foundation.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"


def test_the_settings_table_lists_every_setting_with_its_default_and_meaning():
    rows = {line for line in CONFIGURATION.read_text().splitlines() if line.startswith("| `STREAMREC_")}
    expected = {
        f"| `STREAMREC_{name.upper()}` | `{Settings.default(name)}` | {field.description} |"
        for name, field in Settings.model_fields.items()
    }
    assert rows == expected


def test_every_relative_link_of_the_front_door_and_the_docs_exists():
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_a_front_door_not_a_notebook():
    assert len(README.read_text().splitlines()) <= 200
