"""`streamrec settings`: every setting with its current value."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streamrec.foundation.settings import Settings


def show_settings(
    markdown: Annotated[bool, typer.Option(help="As the Markdown table of docs/configuration.md.")] = False,
) -> None:
    """Every setting: environment variable, current value, meaning."""
    current = Settings()
    rows = [
        (f"STREAMREC_{name.upper()}", str(getattr(current, name)), field.description or "")
        for name, field in Settings.model_fields.items()
    ]
    if markdown:
        print("| variable | default | meaning |\n|---|---|---|")
        for row in rows:
            print("| `{}` | `{}` | {} |".format(*row))
        return
    table = Table("variable", "value", "meaning")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
