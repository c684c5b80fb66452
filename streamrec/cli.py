"""The `streamrec` command: one sub-command per process of the system."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from foundation.settings import Settings
from foundation.store import StoreError
from streamrec.broker import BrokerError, EmbeddedBroker, kafka_bootstrap

app = typer.Typer(help="streamrec: streaming recommendations for online shops.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: each prints figures; with --json its last line is one JSON object.")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)
log = logging.getLogger("streamrec")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_until_signal(make: Any) -> Any:
    """Run `make(stop)` (a coroutine factory) with Ctrl-C/SIGTERM setting `stop`,
    so each command shuts down in order instead of being torn down mid-write."""

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await make(stop)

    return asyncio.run(runner())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


# --- broker and worker -----------------------------------------------------------


@app.command()
def broker(
    port: Annotated[int | None, typer.Option(help="Port (default: STREAMREC_BROKER_PORT, 9092).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (tansu, memory storage) until Ctrl-C."""
    settings = Settings()
    # The handlers only note the request: stopping (and waiting for) the broker
    # inside a handler that interrupts a wait on the same process hung for ever.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    embedded = EmbeddedBroker(settings.broker_host, port or settings.broker_port)
    embedded.start()
    console.print(f"broker listening on [bold]{embedded.bootstrap}[/] (memory storage); Ctrl-C stops it")
    while embedded.poll() is None and not stop.wait(0.2):
        pass
    code = embedded.poll()
    embedded.stop()
    if not stop.is_set():
        console.print(f"[red]error:[/] the broker exited by itself with code {code}")
        raise typer.Exit(code or 1)


@app.command()
def worker(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: STREAMREC_WORKER_PORT, 6066).")] = None,
) -> None:
    """Run a stream worker: features, item statistics, dead letters, GET /users/{id}."""
    from streamrec.processes import run_worker

    settings = Settings()
    if port is not None:
        settings = settings.derive(worker_port=port)
    with kafka_bootstrap(settings) as bootstrap:
        run_until_signal(lambda stop: run_worker(settings, bootstrap, stop))


@app.command()
def forget(user_id: Annotated[str, typer.Argument(help="The shop's id of the user.")]) -> None:
    """Forget a user everywhere: the workers' features and changelog, the servers' replicas,
    the published recommendations and the trainer's cache (via the recs.control topic)."""
    from foundation.control import send_forget
    from foundation.kafka import start_producer
    from foundation.privacy import Pseudonyms
    from foundation.topics import Topics, ensure_topics

    settings = Settings()
    if not 0 < len(user_id) <= settings.max_id_chars:
        console.print(f"[red]error:[/] a user id has 1 to {settings.max_id_chars} characters")
        raise typer.Exit(2)

    async def go(bootstrap: str) -> Any:
        await ensure_topics(settings, bootstrap)
        producer = await start_producer(bootstrap)
        try:
            return await send_forget(
                producer, Topics.from_settings(settings), Pseudonyms.from_settings(settings), user_id
            )
        finally:
            await producer.stop()

    with kafka_bootstrap(settings) as bootstrap:
        sent = asyncio.run(go(bootstrap))
    console.print(
        f"forget request for {user_id!r} stored at {sent.topic}[{sent.partition}]@{sent.offset}: "
        "the owning worker acts within its commit interval, the trainer at its next refresh"
    )


# --- traffic --------------------------------------------------------------------


@app.command()
def simulate(
    events: Annotated[int, typer.Option(min=0, help="Events to send; 0: run until Ctrl-C.")] = 100_000,
    rate: Annotated[
        float | None,
        typer.Option(help="Events per second (wall-clock timestamps); unset: as fast as possible (simulated clock)."),
    ] = None,
    users: Annotated[int, typer.Option(help="Simulated users.")] = 2000,
    items: Annotated[int, typer.Option(help="Items at the start (more appear over time).")] = 2000,
    categories: Annotated[int, typer.Option(help="Categories (1-200).")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same events.")] = 7,
    new_item_every: Annotated[int, typer.Option(help="Events between new items (0: none).")] = 500,
    ground_truth: Annotated[Path | None, typer.Option(help="Write the planted structure (JSON) here.")] = None,
) -> None:
    """Send synthetic shop traffic with a planted structure and a ground truth."""
    from streamrec.shop.producer import ShopProducer
    from streamrec.shop.simulate import Shop, ShopConfig, send_traffic

    settings = Settings()
    shop = Shop(ShopConfig(users=users, items=items, categories=categories, seed=seed, new_item_every=new_item_every))
    limit = events or None

    async def go(stop: asyncio.Event) -> int:
        async with ShopProducer(bootstrap, settings) as producer:
            with _progress() as progress:
                task = progress.add_task("simulating", total=limit)
                sending = asyncio.create_task(
                    send_traffic(
                        shop,
                        producer,
                        max_events=limit,
                        rate=rate,
                        on_progress=lambda n: progress.update(task, completed=n),
                    )  # fmt: skip
                )
                await asyncio.wait({sending, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    return await sending
                return producer.sent

    with kafka_bootstrap(settings) as bootstrap:
        sent = run_until_signal(go)
    console.print(f"sent {sent} records ({len(shop.items)} items in the catalog)")
    if ground_truth is not None:
        ground_truth.parent.mkdir(parents=True, exist_ok=True)
        ground_truth.write_text(json.dumps(shop.ground_truth()))
        console.print(f"ground truth written to {ground_truth}")


# The columns of an interaction log: shared by `replay` and `bench quality`.
EventsCsv = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Interaction log (CSV).")]
ItemsCsv = Annotated[
    Path | None,
    typer.Option("--items", exists=True, dir_okay=False, help="Item file (CSV): id, title, category or genres."),
]
UserCol = Annotated[str, typer.Option(help="User id column.")]
ItemCol = Annotated[str, typer.Option(help="Item id column.")]
TimeCol = Annotated[str, typer.Option(help="Time column: Unix seconds/milliseconds or ISO 8601.")]
TypeCol = Annotated[str | None, typer.Option(help="Event type column (purchase/buy/transaction... else click).")]
RatingCol = Annotated[str | None, typer.Option(help="Rating column; with --purchase-threshold.")]
PurchaseThreshold = Annotated[
    float | None, typer.Option(help="Ratings at or above this are purchases, the rest clicks.")
]
ItemsIdCol = Annotated[str, typer.Option(help="Item file: id column.")]
ItemsTitleCol = Annotated[str, typer.Option(help="Item file: title column.")]
ItemsCategoryCol = Annotated[str, typer.Option(help="Item file: category (or genre list) column.")]
CategorySep = Annotated[str, typer.Option(help="Separator of a genre list; the first genre is the category.")]


def _read_log(
    settings: Settings, events_csv: Path, items: Path | None, events: Any, item_columns: Any
) -> tuple[list, list]:
    """The log's events and its catalog (the item file's, or a bare one from
    the events' item ids); a malformed file is one line and exit code 2."""
    from foundation.schema import Limits
    from streamrec.shop.replay import ReplayError, bare_catalog, read_events, read_items

    limits = Limits.from_settings(settings)
    try:
        log.info("reading %s", events_csv)
        read = read_events(events_csv, events, limits)
        return read, (read_items(items, item_columns, limits) if items else bare_catalog(read))
    except ReplayError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def replay(
    events_csv: EventsCsv,
    items: ItemsCsv = None,
    user_col: UserCol = "user_id",
    item_col: ItemCol = "item_id",
    time_col: TimeCol = "timestamp",
    type_col: TypeCol = None,
    rating_col: RatingCol = None,
    purchase_threshold: PurchaseThreshold = None,
    items_id_col: ItemsIdCol = "item_id",
    items_title_col: ItemsTitleCol = "title",
    items_category_col: ItemsCategoryCol = "category",
    category_sep: CategorySep = "|",
) -> None:
    """Replay an interaction log as events, in time order (the catalog first)."""
    from streamrec.shop.producer import ShopProducer
    from streamrec.shop.replay import EventColumns, ItemColumns, send_replay

    settings = Settings()
    events, catalog = _read_log(
        settings,
        events_csv,
        items,
        EventColumns(user_col, item_col, time_col, type_col, rating_col, purchase_threshold),
        ItemColumns(items_id_col, items_title_col, items_category_col, category_sep),
    )

    async def go() -> None:
        async with ShopProducer(bootstrap, settings) as producer:
            with _progress() as progress:
                task = progress.add_task("replaying", total=len(events))
                await send_replay(producer, events, catalog, lambda n: progress.update(task, completed=n))

    with kafka_bootstrap(settings) as bootstrap:
        asyncio.run(go())
    purchases = sum(e.type == "purchase" for e in events)
    console.print(f"replayed {len(catalog)} items, {len(events)} events ({purchases} purchases)")


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 500.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and write a report (unattended runs).")
    ] = None,
    train_every: Annotated[str, typer.Option(help="How often the trainer refreshes the model (90s, 10m).")] = "90s",
) -> None:
    """Everything on one machine: broker, worker, trainer, API server and simulated traffic, with a dashboard."""
    from streamrec.demo import FIVE_MINUTES_S, run_demo, write_report

    parse_duration(train_every)
    settings = Settings()
    with kafka_bootstrap(settings) as bootstrap:
        milestones = run_until_signal(
            lambda stop: run_demo(
                settings, bootstrap, stop, rate=rate, duration=duration, train_every=train_every, console=Console()
            )
        )
    if duration is not None:
        report = write_report(milestones, settings, rate)
        print(Path(report).read_text())
        console.print(f"report written to {report} (with demo.json and demo.png)")
        if not milestones.all_within(FIVE_MINUTES_S):
            console.print("[yellow]not everything was reached within five minutes[/]: see the report")


# --- the model --------------------------------------------------------------------


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


def _training_progress() -> tuple[Progress, Any]:
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[speed]:,.0f} examples/s"),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip
    task = progress.add_task("training", total=None, epoch=0, loss=0.0, speed=0.0)

    def update(status: dict) -> None:
        progress.update(task, completed=status["done"], total=status["of"], epoch=status["epoch"] + 1,
                        loss=status["loss"], speed=status["examples_per_s"])  # fmt: skip

    return progress, update


def _say_outcome(outcome: Any) -> None:
    if outcome.version is None:
        console.print(outcome.reason)
        return
    figure, training = outcome.manifest.metric, outcome.manifest.training
    console.print(
        f"version [bold]{outcome.version}[/] ({training.kind} refresh, {training.why}, "
        f"{training.seconds:.0f} s): test recall@20 {figure('test', 'recall@20'):.4f} "
        f"(popularity {figure('popularity', 'recall@20'):.4f}), ndcg@20 {figure('test', 'ndcg@20'):.4f}, "
        f"coverage@20 {figure('test', 'coverage@20'):.3f}"
    )
    console.print(("[green]current[/]: " if outcome.promoted else "[yellow]not made current[/]: ") + outcome.reason)


@app.command()
def train(
    every: Annotated[
        str | None, typer.Option(help="Keep refreshing at this interval (90s, 10m, 2h) until Ctrl-C.")
    ] = None,
    min_new_events: Annotated[
        int,
        typer.Option(
            min=0,
            help="Skip a refresh until this many events arrived since the current version (in all, before the first).",
        ),
    ] = 0,
    force: Annotated[
        bool, typer.Option(help="Make the new version current even if it is worse (overrides the gate).")
    ] = False,
    rollback: Annotated[
        bool, typer.Option(help="Make the previous version current again (and announce it); no training.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(help="Retrain from scratch now, even where a warm refresh is due (STREAMREC_TRAIN_FULL_EVERY)."),
    ] = False,
) -> None:
    """Train the two-tower model on the event log and publish a version."""
    from foundation.store import ModelStore
    from trainer.announce import announce
    from trainer.schedule import train_every, train_once

    settings = Settings()
    choose_index = None
    if settings.index_tune:  # once here, for every server and worker (composed at the top: trainer and index)
        from index.tune import choose_for_version

        choose_index = functools.partial(choose_for_version, ModelStore.from_settings(settings), settings)
    if rollback:
        version = ModelStore.from_settings(settings).rollback()  # nothing to roll back to: one line, exit 2 (run)
        with kafka_bootstrap(settings) as bootstrap:
            asyncio.run(announce(settings, bootstrap, ModelStore.from_settings(settings), version))
        console.print(f"current version is now [bold]{version}[/] (announced)")
        return
    interval = parse_duration(every) if every else None
    with kafka_bootstrap(settings) as bootstrap:
        if interval is None:
            progress, update = _training_progress()
            try:
                with progress:
                    outcome = asyncio.run(
                        train_once(
                            settings,
                            bootstrap,
                            force=force,
                            full=full,
                            min_new_events=min_new_events,
                            on_progress=update,
                            choose_index=choose_index,
                        )  # fmt: skip
                    )
            except (RuntimeError, StoreError) as exc:
                console.print(
                    f"[red]training failed[/]; current version "
                    f"{ModelStore.from_settings(settings).current()} kept: {exc}"
                )
                raise typer.Exit(1) from None
            _say_outcome(outcome)
            return
        console.print(f"training every {every} (at least {min_new_events} new events); Ctrl-C stops")
        run_until_signal(
            lambda stop: train_every(
                settings,
                bootstrap,
                stop,
                interval,
                min_new_events=min_new_events,
                on_outcome=_say_outcome,
                choose_index=choose_index,
            )  # fmt: skip
        )


def _load_version(settings: Settings, version: str | None) -> Any:
    """A stored version (the current one by default); a missing or malformed one
    is a StoreError, which `run` reports in one line with exit code 2."""
    from embeddings.versions import load_version
    from foundation.store import ModelStore

    return load_version(ModelStore.from_settings(settings), version)


@app.command()
def evaluate(
    version: Annotated[str | None, typer.Option(help="Model version (default: the current one).")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of recall@K by K (default: DATA_DIR/reports/evaluate-VERSION.png).")
    ] = None,
) -> None:
    """Recall, NDCG, coverage and diversity of a version against popularity, on the held-out users' newest events."""
    from streamrec.plots import recall_curves
    from trainer.schedule import evaluate_on_log

    settings = Settings()
    loaded = _load_version(settings, version)
    # One evaluation at every K of the plot (the table's K are among them).
    curve_ks = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
    table_ks = (5, 10, 20, 50)
    with kafka_bootstrap(settings) as bootstrap:
        judged = asyncio.run(evaluate_on_log(settings, bootstrap, loaded, curve_ks))
    result = judged.evaluation
    table = Table("metric", f"model {loaded.version}", "popularity", "ratio")
    rows = [(f"{name}@{k}", getattr(result.model, name)[k], getattr(result.popularity, name)[k])
            for name in ("recall", "ndcg") for k in table_ks]  # fmt: skip
    rows += [(f"{name}@20", getattr(result.model, name), getattr(result.popularity, name))
             for name in ("coverage", "diversity")]  # fmt: skip
    for label, ours, theirs in rows:
        table.add_row(label, f"{ours:.4f}", f"{theirs:.4f}", f"{ours / theirs:.2f}x" if theirs else "-")
    Console().print(table)
    console.print(
        f"{result.model.users} held-out users (each one's newest events, new items as targets), "
        f"{judged.items} items, {judged.events} events"
    )
    curves = {f"two-tower {loaded.version}": result.model, "popularity": result.popularity}
    path = plot or settings.data_dir / "reports" / f"evaluate-{loaded.version}.png"
    recall_curves(path, curves, f"recall@K of {result.model.users} held-out users' newest events")
    console.print(f"plot written to {path}")


# --- serving ----------------------------------------------------------------------


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: STREAMREC_API_PORT, 8000).")] = None,
) -> None:
    """The HTTP API: recommendations, similar items, personalised search (OpenAPI at /docs)."""
    from streamrec.processes import run_server

    settings = Settings()
    if port is not None:
        settings = settings.derive(api_port=port)
    with kafka_bootstrap(settings) as bootstrap:
        run_until_signal(lambda stop: run_server(settings, bootstrap, stop))


def _measurement_table(title: str, k: int) -> Table:
    table = Table(title=title)
    table.add_column("configuration", no_wrap=True)
    for name in (f"recall@{k}", "p50 ms", "p99 ms", "batch ms/q", "B/item", "build s"):
        table.add_column(name, justify="right")
    return table


def _add_measurements(table: Table, measured: list, label: str = "") -> None:
    for m in measured:
        table.add_row(
            f"{label}{m.spec.label()}", f"{m.recall_at_k:.3f}", f"{m.p50_ms:.3f}", f"{m.p99_ms:.3f}",
            f"{m.batch_ms_per_query:.4f}", f"{m.bytes_per_item:,.0f}", f"{m.build_s:.1f}",
        )  # fmt: skip


class Prefer(StrEnum):
    latency = "latency"
    memory = "memory"


@app.command()
def tune(
    version: Annotated[str | None, typer.Option(help="Model version (default: the current one).")] = None,
    recall: Annotated[
        float | None, typer.Option(min=0, max=1, help="Recall floor (default STREAMREC_TUNE_RECALL, 0.95; 0: none).")
    ] = None,
    p99_ms: Annotated[
        float | None, typer.Option(min=0, help="p99 single-query latency ceiling in ms (0: none).")
    ] = None,
    max_bytes: Annotated[float | None, typer.Option(min=0, help="Bytes per item ceiling (0: none).")] = None,
    prefer: Annotated[
        Prefer | None, typer.Option(help="Among those meeting the target: the fastest or the smallest.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of recall against latency (default: DATA_DIR/reports/tune-VERSION.png).")
    ] = None,
) -> None:
    """Measure index configurations on a version with real user queries; pick the cheapest meeting the target."""
    from foundation.topics import Topics
    from index.cost import settings_for
    from index.live import FeatureReplica
    from index.tune import tune as run_tune
    from streamrec.plots import tuning_map

    overrides = {
        "tune_recall": recall,
        "tune_p99_ms": p99_ms,
        "tune_bytes_per_item": max_bytes,
        "tune_prefer": prefer and prefer.value,
    }
    settings = Settings(**{name: value for name, value in overrides.items() if value is not None})
    loaded = _load_version(settings, version)
    replica = FeatureReplica(Topics.from_settings(settings).user_features_changelog)

    async def read_users(bootstrap: str) -> None:
        await replica.start(bootstrap)  # reads the changelog to its end
        await replica.stop()

    with kafka_bootstrap(settings) as bootstrap:
        asyncio.run(read_users(bootstrap))
    table = _measurement_table(f"model {loaded.version}: {len(loaded.item_ids):,} items", settings.tune_k)
    console.print(
        f"measuring {loaded.version} ({len(loaded.item_ids):,} items) "
        f"with up to {settings.tune_queries} user queries ..."
    )
    tuning = run_tune(
        loaded, replica.sample(2 * settings.tune_queries), settings, on_measured=lambda ms: _add_measurements(table, ms)
    )
    Console().print(table)
    console.print(
        f"{tuning.queries_from_users} queries came from users, the rest from item vectors; target: {tuning.target}"
    )
    path = plot or settings.data_dir / "reports" / f"tune-{loaded.version}.png"
    tuning_map(path, {"faiss": tuning.measurements}, tuning.chosen, f"index configurations, model {loaded.version}")
    console.print(f"plot written to {path}")
    if tuning.chosen is None:
        console.print("[yellow]no configuration meets the target[/]: loosen it, or look at the table for the nearest")
        raise typer.Exit(1)
    console.print(f"[green]chosen[/]: {tuning.chosen.spec.label()}; to serve it:")
    Console().print(" ".join(f"{name}={value}" for name, value in settings_for(tuning.chosen.spec).items()))


# --- settings and benchmarks --------------------------------------------------------


@app.command("settings")
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


JsonLine = Annotated[bool, typer.Option("--json", help="End with one JSON line.")]  # every benchmark's flag


def _figure(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _show_result(result: dict, as_json: bool) -> None:
    """A benchmark's figures as a table; with --json also as the last line."""
    table = Table("measure", "value")
    for name, value in result.items():
        table.add_row(name, _figure(value))
    Console().print(table)
    if as_json:
        print(json.dumps(result))


@bench_app.command("ingest")
def bench_ingest(
    events: Annotated[int, typer.Option(help="Events to push through.")] = 500_000,
    users: Annotated[int, typer.Option(help="Distinct users.")] = 100_000,
    items: Annotated[int, typer.Option(help="Distinct items.")] = 10_000,
    engine: Annotated[
        str, typer.Option(help="Engines to measure, comma-separated: batch, faust (each reads the same events).")
    ] = "batch",
    as_json: JsonLine = False,
) -> None:
    """Events/s through one worker per engine (durable state) beside raw aiokafka consume-and-decode."""
    from streamrec.bench.ingest import bench_ingest as run_bench

    engines = tuple(name.strip() for name in engine.split(",") if name.strip())
    unknown = set(engines) - {"batch", "faust"}
    if unknown or not engines:
        raise typer.BadParameter(
            f"engines are batch and faust, not {sorted(unknown) or engine!r}", param_hint="--engine"
        )
    settings = Settings()
    console.print(f"producing {events} events over {users} users and {items} items ...")
    with kafka_bootstrap(settings) as bootstrap:
        result = asyncio.run(run_bench(settings, bootstrap, events, users, items, engines))
    table = Table("measure", "events/s", "ratio to raw")
    table.add_row("produce (ShopProducer, acks=all)", f"{result.produce_events_per_s:,.0f}", "")
    table.add_row("raw aiokafka consume + msgpack decode", f"{result.raw_events_per_s:,.0f}", "1.00")
    for name in engines:
        table.add_row(
            f"{name} engine: validate, dedup, features, changelog, commit",
            f"{result.events_per_s[name]:,.0f}",
            f"{result.ratio(name):.3f}",
        )
    Console().print(table)
    if as_json:
        print(json.dumps(result.to_json()))


@bench_app.command("train")
def bench_train(
    events: Annotated[int, typer.Option(help="Simulated events in the log (the data window).")] = 1_000_000,
    new_events: Annotated[
        int, typer.Option(min=1, help="Of them, the newest: what the warm refresh is about.")
    ] = 50_000,
    users: Annotated[int, typer.Option(help="Simulated users.")] = 20_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 10_000,
    epochs: Annotated[
        int | None,
        typer.Option(help="Cap a full refresh's epochs (default: STREAMREC_TRAIN_EPOCHS with early stopping)."),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """A full refresh against a warm one on the same log: wall time, examples/s, test recall@20."""
    from streamrec.bench.train import bench_train as run_bench

    if not 0 < new_events < events:
        raise typer.BadParameter(f"--new-events must be between 1 and --events - 1 ({events - 1})")
    settings = Settings()
    if epochs is not None:
        settings = settings.derive(train_epochs=epochs)
    console.print(f"simulating and producing {events} events ({users} users, {items} items) ...")
    progress, update = _training_progress()
    with kafka_bootstrap(settings) as bootstrap, progress:
        result = asyncio.run(run_bench(settings, bootstrap, events, users, items, new_events, update,
                                       lambda phase: progress.console.print(phase)))  # fmt: skip
    table = Table("measure", "full refresh", "warm refresh")
    for name in result["full"]:
        table.add_row(name, *(_figure(result[kind][name]) for kind in ("full", "warm")))
    Console().print(table)
    console.print(
        f"warm / full: time {result['warm_to_full_time']:.3f}, recall@20 {result['warm_to_full_recall']:.3f} "
        f"(base version on the older events: {result['base_refresh_s']:,} s)"
    )
    if as_json:
        print(json.dumps(result))


@bench_app.command("index")
def bench_index(
    items: Annotated[int | None, typer.Option(help="One catalog size (default: 10k, 100k and 1M).")] = None,
    queries: Annotated[
        int, typer.Option(min=10, help="Queries per size (single-query timing uses the first 300).")
    ] = 1000,
    dim: Annotated[int, typer.Option(min=2, help="Vector dimensions.")] = 64,
    threads: Annotated[int | None, typer.Option(help="Search threads (default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of every configuration.")] = False,
) -> None:
    """Every index kind and its knobs against exact search at each catalog size, beside hnswlib."""
    from index.cost import Target, choose
    from streamrec.bench.index import bench_index as run_bench
    from streamrec.plots import tuning_map

    settings = Settings()
    sizes = [items] if items else [10_000, 100_000, 1_000_000]
    k = 10

    def show(n: int, library: str, measured: list) -> None:
        table = _measurement_table("", k)
        _add_measurements(table, measured, f"{library} ")
        Console().print(table)

    results = run_bench(sizes, dim, queries, k, settings.index_batch_size, threads, on_measured=show)
    goals = {
        "recall@10 >= 0.95 and p99 < 2 ms (fastest)": Target(0.95, 2.0),
        "<= 32 bytes/item and recall@10 >= 0.85 (smallest)": Target(0.85, None, 32.0, prefer="memory"),
    }
    rows, targets = [], []
    for n, by_library in results.items():
        for goal, target in goals.items():
            best = choose(by_library["faiss"], target)
            targets.append({"items": n, "goal": goal, "met_by": best.as_row(k) if best else None})
            console.print(
                f"{n:,} items, {goal}: "
                + (
                    f"[green]{best.spec.label()}[/] (recall {best.recall_at_k:.3f}, "
                    f"p99 {best.p99_ms:.3f} ms, {best.bytes_per_item:.1f} B/item)"
                    if best
                    else "[red]not met[/]"
                )
            )
        path = tuning_map(
            settings.data_dir / "reports" / f"bench-index-{n}.png", by_library, None, f"{n:,} items, d={dim}"
        )
        console.print(f"plot written to {path}")
        rows += [dict(m.as_row(k), library=library) for library, ms in by_library.items() for m in ms]
    if as_json:
        print(json.dumps({"configs": rows, "targets": targets, "dim": dim, "queries": queries}))


@bench_app.command("freshness")
def bench_freshness(
    users: Annotated[int, typer.Option(help="Distinct users sending events.")] = 100_000,
    items: Annotated[int, typer.Option(help="Catalog items in the index.")] = 100_000,
    rate: Annotated[float, typer.Option(help="Events per second in the paced phase.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the paced phase.")] = 30.0,
    burst: Annotated[int, typer.Option(help="Events sent at once to measure publishes/s.")] = 50_000,
    as_json: JsonLine = False,
) -> None:
    """Event-to-published-recommendation latency at a steady rate, and publishes/s under a burst."""
    from streamrec.bench.freshness import bench_freshness as run_bench

    settings = Settings()
    with kafka_bootstrap(settings) as bootstrap:
        result = asyncio.run(
            run_bench(
                settings,
                bootstrap,
                users=users,
                items=items,
                rate=rate,
                seconds=seconds,
                burst=burst,
                on_status=console.print,
            )
        )
    _show_result(result, as_json)


@bench_app.command("http")
def bench_http(
    items: Annotated[int, typer.Option(help="Items in the served index.")] = 1_000_000,
    users: Annotated[int, typer.Option(help="Users with features in the server.")] = 10_000,
    requests: Annotated[int, typer.Option(help="Requests timed (after 100 to warm up).")] = 5000,
    as_json: JsonLine = False,
) -> None:
    """p50/p99 of GET /recommendations over HTTP against a server holding N items (STREAMREC_INDEX_* knobs apply)."""
    from streamrec.bench.http import bench_http as run_bench

    settings = Settings()
    result = run_bench(settings, items, users, requests, on_status=console.print)
    _show_result(result, as_json)


@bench_app.command("scale")
def bench_scale(
    workers: Annotated[str, typer.Option(help="Worker process counts to run, comma-separated.")] = "1,2",
    users: Annotated[int, typer.Option(help="Distinct users.")] = 100_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 10_000,
    rate: Annotated[float, typer.Option(help="Steady events/s of the freshness phase.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the freshness phase.")] = 20.0,
    burst: Annotated[int, typer.Option(help="Events of the throughput burst.")] = 100_000,
    as_json: JsonLine = False,
) -> None:
    """1, 2 (...) worker processes against one broker: the group's events/s and publishes/s, and freshness p50/p99."""
    from streamrec.bench.scale import bench_scale as run_bench

    settings = Settings()
    counts = tuple(int(n) for n in workers.split(",") if n.strip())
    with kafka_bootstrap(settings) as bootstrap:
        result = asyncio.run(
            run_bench(
                settings,
                bootstrap,
                counts=counts,
                users=users,
                items=items,
                rate=rate,
                seconds=seconds,
                burst=burst,
                on_status=console.print,
            )  # fmt: skip
        )
    table = Table("workers", "events/s", "x one", "publishes/s", "freshness p50 ms", "p99 ms")
    for n in result["events_per_s"]:
        table.add_row(n, f"{result['events_per_s'][n]:,}", f"{result['events_per_s_ratio'][n]:.2f}",
                      f"{result['publishes_per_s'][n]:,.0f}", f"{result['freshness_p50_ms'][n]:.0f}",
                      f"{result['freshness_p99_ms'][n]:.0f}")  # fmt: skip
    Console().print(table)
    if as_json:
        print(json.dumps(result))


@bench_app.command("quality")
def bench_quality(
    events_csv: EventsCsv,
    items: ItemsCsv = None,
    user_col: UserCol = "user_id",
    item_col: ItemCol = "item_id",
    time_col: TimeCol = "timestamp",
    type_col: TypeCol = None,
    rating_col: RatingCol = None,
    purchase_threshold: PurchaseThreshold = None,
    items_id_col: ItemsIdCol = "item_id",
    items_title_col: ItemsTitleCol = "title",
    items_category_col: ItemsCategoryCol = "category",
    category_sep: CategorySep = "|",
    seeds: Annotated[int, typer.Option(min=1, max=10, help="Product runs with training seeds 0..N-1.")] = 1,
    peers: Annotated[bool, typer.Option(help="Also tune and run the classical peers (the `peers` extra).")] = True,
    out: Annotated[Path, typer.Option(help="Directory of the JSON and the plot.")] = Path("figures"),
    as_json: JsonLine = False,
) -> None:
    """The product (replay -> worker -> train -> API) against tuned ALS, BPR, item-kNN, BM25 and popularity,
    on each user's latest 20% of events: recall@K, NDCG@20, coverage, diversity; a table, a plot and JSON."""
    from streamrec.bench.quality import PRODUCT, write_figures
    from streamrec.bench.quality import bench_quality as run_bench
    from streamrec.shop.replay import EventColumns, ItemColumns

    settings = Settings()
    if peers:
        try:
            import implicit  # noqa: F401
        except ImportError:
            console.print("[red]error:[/] the peers need the `peers` extra: pip install -e '.[peers]' (or --no-peers)")
            raise typer.Exit(2) from None
    events, catalog = _read_log(
        settings,
        events_csv,
        items,
        EventColumns(user_col, item_col, time_col, type_col, rating_col, purchase_threshold),
        ItemColumns(items_id_col, items_title_col, items_category_col, category_sep),
    )
    ports = (settings.api_port, settings.worker_port)
    with kafka_bootstrap(settings) as bootstrap:
        report = asyncio.run(
            run_bench(
                settings, bootstrap, events, catalog, seeds=seeds, peers=peers, ports=ports, on_status=console.print
            )
        )
    table = Table("system", "recall@10", "recall@20", "recall@50", "NDCG@20", "coverage@20", "diversity@20")
    for name, quality in report.systems.items():
        table.add_row(f"[bold]{name}[/]" if name == PRODUCT else name,
                      *(f"{quality.recall[k]:.4f}" for k in (10, 20, 50)), f"{quality.ndcg[20]:.4f}",
                      f"{quality.coverage:.3f}", f"{quality.diversity:.3f}")  # fmt: skip
    Console().print(table)
    for name, params in report.params.items():
        console.print(f"{name}: chosen on the validation window: {params or 'nothing to tune'}")
    summary = report.to_json()
    if summary["best_peer"]:
        console.print(
            f"{PRODUCT} recall@20 {summary['product_recall@20_mean']:.4f} "
            f"(spread {summary['product_recall@20_spread']:.4f} over {seeds} seeds) = "
            f"{summary['ratio_to_best_peer']:.3f} x the best peer ({summary['best_peer']}); "
            "target >= 1.10"
        )
    paths = write_figures(report, out, f"{events_csv.name}: each user's newest 20%, new items")
    console.print(f"written: {', '.join(str(p) for p in paths)}")
    if as_json:
        print(json.dumps(summary))


USER_ERRORS = (BrokerError, KafkaError, OSError, StoreError)


def run() -> None:
    """The `streamrec` command. What a user can cause and fix (a port in use, an
    unreachable broker, a missing file or model) is one line and exit code 2,
    never a traceback."""
    try:
        app()
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/] {exc or type(exc).__name__}")
        sys.exit(2)


if __name__ == "__main__":  # the demo starts the trainer and the server as `python -m streamrec.cli`
    run()
