"""What every command shares: the console, signals, progress, durations,
the benchmarks' JSON line and the interaction log's column options."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamrec.broker import free_ports, kafka_connection
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings

console = Console(stderr=True)
log = logging.getLogger("streamrec")


def run_until_signal(make: Callable[[asyncio.Event], Any]) -> Any:
    """Run `make(stop)` (a coroutine factory) with Ctrl-C/SIGTERM setting `stop`,
    so each command shuts down in order instead of being torn down mid-write."""

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await make(stop)

    return asyncio.run(runner())


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


def training_progress() -> tuple[Progress, Callable[[dict], None]]:
    """A bar of the training loop's epochs, and the callback that moves it."""
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[speed]:,.0f} examples/s"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("training", total=None, epoch=0, loss=0.0, speed=0.0)

    def update(status: dict) -> None:
        progress.update(
            task,
            completed=status["done"],
            total=status["of"],
            epoch=status["epoch"] + 1,
            loss=status["loss"],
            speed=status["examples_per_s"],
        )

    return progress, update


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 10m or 2h") from None
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r}: the interval must be positive")
    return seconds


def load_version(settings: Settings, version: str | None) -> Any:
    """A stored version (the current one by default); a missing or malformed one
    is a StoreError, which `run` reports in one line with exit code 2."""
    from streamrec.embeddings.versions import load_version as load
    from streamrec.foundation.store import ModelStore

    return load(ModelStore.in_data_dir(settings.data_dir), version)


# --- benchmarks' output -------------------------------------------------------------

JsonLine = Annotated[bool, typer.Option("--json", help="End with one JSON line.")]  # every benchmark's flag
ApacheKafka = Annotated[
    bool,
    typer.Option(
        "--apache-kafka",
        help="On a one-node Apache Kafka instead of the embedded tansu (needs java and mvn; jars fetched once).",
    ),
]


def broker_name(settings: Settings, apache_kafka: bool) -> str:
    """Which broker `run_broker` runs on, for a benchmark's figures."""
    return "apache-kafka" if apache_kafka else "configured" if settings.kafka_bootstrap else "tansu"


# One worker on the embedded tansu (the demo, `bench freshness`) gets topics of
# this many partitions unless STREAMREC_PARTITIONS says otherwise: tansu's
# memory storage lists every batch of a partition on each fetch, so each
# partition adds its own growing list to every round of fetches (p99 98 ms
# with 8 partitions, 22 ms with 1 in `bench freshness`), and one worker needs
# no more.
EMBEDDED_PARTITIONS = 1


def for_one_worker(settings: Settings, apache_kafka: bool) -> Settings:
    """The settings of a one-worker run: on the embedded tansu, its partitions."""
    if broker_name(settings, apache_kafka) == "tansu" and "partitions" not in settings.model_fields_set:
        return settings.derive(partitions=EMBEDDED_PARTITIONS)
    return settings


@contextlib.contextmanager
def run_broker(settings: Settings, apache_kafka: bool, workdir: Path) -> Iterator[KafkaConnection]:
    """The configured or embedded broker, or a one-node Apache Kafka in
    `workdir`, emptied first: each run's cluster starts empty, as tansu does."""
    if not apache_kafka:
        with kafka_connection(settings.kafka) as kafka:
            yield kafka
        return
    from streamrec.apache_kafka import KafkaCluster

    shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"starting a one-node Apache Kafka (logs in {workdir}) ...")
    with KafkaCluster(1, free_ports(2), workdir=workdir) as cluster:
        yield KafkaConnection(cluster.bootstrap)


def figure(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def show_result(result: dict, as_json: bool) -> None:
    """A benchmark's figures as a table; with --json also as the last line."""
    table = Table("measure", "value")
    for name, value in result.items():
        table.add_row(name, figure(value))
    Console().print(table)
    if as_json:
        print(json.dumps(result))


def measurement_table(title: str, k: int) -> Table:
    """The index configurations' table, for `tune` and `bench index`."""
    table = Table(title=title)
    table.add_column("configuration", no_wrap=True)
    for name in (f"recall@{k}", "p50 ms", "p99 ms", "batch ms/q", "B/item", "build s"):
        table.add_column(name, justify="right")
    return table


def add_measurements(table: Table, measured: list, label: str = "") -> None:
    for m in measured:
        table.add_row(
            f"{label}{m.spec.label()}",
            f"{m.recall_at_k:.3f}",
            f"{m.p50_ms:.3f}",
            f"{m.p99_ms:.3f}",
            f"{m.batch_ms_per_query:.4f}",
            f"{m.bytes_per_item:,.0f}",
            f"{m.build_s:.1f}",
        )


# --- an interaction log's columns: `replay` and `bench quality` ------------------------

_EVENTS_CSV = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Interaction log (CSV).")]
_COLUMNS: dict[str, tuple[Any, Any]] = {  # option -> (annotation, default)
    "items": (
        Annotated[
            Path | None,
            typer.Option(
                "--items", exists=True, dir_okay=False, help="Item file (CSV): id, title, category or genres."
            ),
        ],
        None,
    ),
    "user_col": (Annotated[str, typer.Option(help="User id column.")], "user_id"),
    "item_col": (Annotated[str, typer.Option(help="Item id column.")], "item_id"),
    "time_col": (Annotated[str, typer.Option(help="Time column: Unix seconds/milliseconds or ISO 8601.")], "timestamp"),
    "type_col": (
        Annotated[str | None, typer.Option(help="Event type column (purchase/buy/transaction... else click).")],
        None,
    ),
    "rating_col": (Annotated[str | None, typer.Option(help="Rating column; with --purchase-threshold.")], None),
    "purchase_threshold": (
        Annotated[float | None, typer.Option(help="Ratings at or above this are purchases, the rest clicks.")],
        None,
    ),
    "items_id_col": (Annotated[str, typer.Option(help="Item file: id column.")], "item_id"),
    "items_title_col": (Annotated[str, typer.Option(help="Item file: title column.")], "title"),
    "items_category_col": (
        Annotated[str, typer.Option(help="Item file: category (or genre list) column.")],
        "category",
    ),
    "category_sep": (
        Annotated[str, typer.Option(help="Separator of a genre list; the first genre is the category.")],
        "|",
    ),
}


@dataclass(frozen=True)
class LogFile:
    """An interaction log, an optional item file, and how to read their columns."""

    events_csv: Path
    items: Path | None
    events: Any  # streamrec.shop.replay.EventColumns
    item_columns: Any  # streamrec.shop.replay.ItemColumns

    @classmethod
    def from_options(cls, events_csv: Path, items: Path | None, **columns: Any) -> LogFile:
        from streamrec.shop.replay import EventColumns, ItemColumns

        events = EventColumns(
            *(
                columns[name]
                for name in ("user_col", "item_col", "time_col", "type_col", "rating_col", "purchase_threshold")
            )
        )
        items_columns = ItemColumns(
            *(columns[name] for name in ("items_id_col", "items_title_col", "items_category_col", "category_sep"))
        )
        return cls(events_csv, items, events, items_columns)

    def read(self, settings: Settings) -> tuple[list, list]:
        """The log's events and its catalog (the item file's, or a bare one from
        the events' item ids); a malformed file is one line and exit code 2."""
        from streamrec.foundation.schema import Limits
        from streamrec.shop.replay import ReplayError, bare_catalog, read_events, read_items

        limits = Limits.from_settings(settings)
        try:
            log.info("reading %s", self.events_csv)
            read = read_events(self.events_csv, self.events, limits)
            catalog = read_items(self.items, self.item_columns, limits) if self.items else bare_catalog(read)
        except ReplayError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        return read, catalog


def with_log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command whose parameter `log: LogFile` the log's argument and
    column options, declared once here; the command sees one `LogFile`."""
    hints = {name: hint for name, hint in get_type_hints(command, include_extras=True).items() if name != "log"}
    own = [
        p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values() if p.name != "log"
    ]
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    columns = [
        inspect.Parameter(name, keyword, annotation=hint, default=default) for name, (hint, default) in _COLUMNS.items()
    ]
    parameters = [inspect.Parameter("events_csv", keyword, annotation=_EVENTS_CSV), *columns, *own]

    @functools.wraps(command)
    def wrapper(**options: Any) -> Any:
        given = {name: options.pop(name) for name in ("events_csv", *_COLUMNS)}
        return command(log=LogFile.from_options(**given), **options)

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer reads this signature, not the command's
    return wrapper
