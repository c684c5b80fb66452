"""The README's settings table is what `streamrec settings --markdown` prints
with defaults: a setting cannot be added, renamed or redescribed silently."""

from __future__ import annotations

from pathlib import Path

from foundation.settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_settings_table_lists_every_setting_with_its_default_and_meaning():
    rows = {line for line in README.read_text().splitlines() if line.startswith("| `STREAMREC_")}
    expected = {
        f"| `STREAMREC_{name.upper()}` | `{Settings.default(name)}` | {field.description} |"
        for name, field in Settings.model_fields.items()
    }
    assert rows == expected
