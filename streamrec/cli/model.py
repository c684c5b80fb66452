"""`streamrec train` and `evaluate`: the model's versions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from streamrec.broker import kafka_connection
from streamrec.cli.common import console, load_version, parse_duration, run_until_signal, training_progress
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore, StoreError


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
    settings = Settings()
    if rollback:
        _rollback(settings)
    elif every is None:
        _train_now(settings, force=force, full=full, min_new_events=min_new_events)
    else:
        _train_every(settings, every, min_new_events)


def _rollback(settings: Settings) -> None:
    from streamrec.processes import rollback_and_announce

    with kafka_connection(settings.kafka) as kafka:  # nothing to roll back to: one line, exit 2 (run)
        version = asyncio.run(rollback_and_announce(settings, kafka))
    console.print(f"current version is now [bold]{version}[/] (announced)")


def _train_now(settings: Settings, **options: Any) -> None:
    from streamrec.processes import index_chooser
    from streamrec.trainer.config import TrainerConfig
    from streamrec.trainer.schedule import train_once

    progress, update = training_progress()
    with kafka_connection(settings.kafka) as kafka:
        try:
            with progress:
                outcome = asyncio.run(
                    train_once(
                        TrainerConfig.from_settings(settings),
                        kafka,
                        on_progress=update,
                        choose_index=index_chooser(settings),
                        **options,
                    )
                )
        except KafkaError:
            raise  # the brokers, not the training (refused, unreachable): one line and exit 2 (run)
        except (RuntimeError, StoreError) as exc:
            current = ModelStore.in_data_dir(settings.data_dir).current()
            console.print(f"[red]training failed[/]; current version {current} kept: {exc}")
            raise typer.Exit(1) from None
    say_outcome(outcome)


def _train_every(settings: Settings, every: str, min_new_events: int) -> None:
    from streamrec.processes import index_chooser
    from streamrec.trainer.config import TrainerConfig
    from streamrec.trainer.schedule import train_every

    interval = parse_duration(every)
    with kafka_connection(settings.kafka) as kafka:
        console.print(f"training every {every} (at least {min_new_events} new events); Ctrl-C stops")
        run_until_signal(
            lambda stop: train_every(
                TrainerConfig.from_settings(settings),
                kafka,
                stop,
                interval,
                min_new_events=min_new_events,
                on_outcome=say_outcome,
                choose_index=index_chooser(settings),
            )
        )


def say_outcome(outcome: Any) -> None:
    """One refresh's result: the version, its figures, and whether it serves."""
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


CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)  # one evaluation at every K of the plot
TABLE_KS = (5, 10, 20, 50)  # among them


def evaluate(
    version: Annotated[str | None, typer.Option(help="Model version (default: the current one).")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of recall@K by K (default: DATA_DIR/reports/evaluate-VERSION.png).")
    ] = None,
) -> None:
    """Recall, NDCG, coverage and diversity of a version against popularity, on the held-out users' newest events."""
    from streamrec.plots import recall_curves
    from streamrec.trainer.config import TrainerConfig
    from streamrec.trainer.schedule import evaluate_on_log

    settings = Settings()
    loaded = load_version(settings, version)
    with kafka_connection(settings.kafka) as kafka:
        judged = asyncio.run(evaluate_on_log(TrainerConfig.from_settings(settings), kafka, loaded, CURVE_KS))
    result = judged.evaluation
    table = Table("metric", f"model {loaded.version}", "popularity", "ratio")
    rows = [
        (f"{name}@{k}", getattr(result.model, name)[k], getattr(result.popularity, name)[k])
        for name in ("recall", "ndcg")
        for k in TABLE_KS
    ]
    rows += [
        (f"{name}@20", getattr(result.model, name), getattr(result.popularity, name))
        for name in ("coverage", "diversity")
    ]
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
    figures = {f"{label} (model, popularity)": [round(ours, 4), round(theirs, 4)] for label, ours, theirs in rows}
    summary = {
        "version": loaded.version,
        "users": result.model.users,
        "items": judged.items,
        "events": judged.events,
        **figures,
    }
    path.with_suffix(".json").write_text(json.dumps(summary, indent=1))  # the console's Quality page shows it
    console.print(f"plot and summary written to {path} and {path.with_suffix('.json')}")
