"""The `streamrec` command: one sub-command per process of the system.

Each group of commands is a module here (`stream`, `traffic`, `demo`,
`model`, `serving`, `settings`); the benchmarks' commands live beside the
benchmarks (`streamrec.bench.commands`).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.logging import RichHandler

from streamrec.bench.commands import bench_app
from streamrec.broker import BrokerError
from streamrec.cli import demo, model, serving, settings, stream, traffic
from streamrec.cli.common import console
from streamrec.foundation.kafka_errors import BootstrapCauses, explain
from streamrec.foundation.settings import SettingsError
from streamrec.foundation.store import StoreError

app = typer.Typer(help="streamrec: streaming recommendations for online shops.", no_args_is_help=True)
for command in (
    stream.broker,
    stream.worker,
    stream.forget,
    traffic.simulate,
    traffic.replay,
    demo.demo,
    model.train,
    model.evaluate,
    serving.serve,
    serving.tune,
):
    app.command()(command)
app.command("settings")(settings.show_settings)
app.add_typer(bench_app, name="bench")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it loads, line by line


USER_ERRORS = (BrokerError, KafkaError, OSError, StoreError, SettingsError)
BOOTSTRAP_CAUSES = BootstrapCauses.install()  # why a broker could not be reached, for the error line


def run() -> None:
    """The `streamrec` command. What a user can cause and fix (a port in use, an
    unreachable broker, a refused password, a missing file or model, a setting
    out of bounds) is one line and exit code 2, never a traceback."""
    try:
        app()
    except ValidationError as exc:  # Settings() read from the environment
        console.print(f"[red]error:[/] {SettingsError.from_validation(exc)}", soft_wrap=True)
        sys.exit(2)
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/] {explain(exc, BOOTSTRAP_CAUSES)}", soft_wrap=True)
        sys.exit(2)
