"""`streamrec serve` and `tune`: the HTTP API and its index."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streamrec.broker import kafka_connection
from streamrec.cli.common import add_measurements, console, load_version, measurement_table, run_until_signal
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings


def serve(port: Annotated[int | None, typer.Option(help="HTTP port (default: STREAMREC_API_PORT).")] = None) -> None:
    """The HTTP API: recommendations, similar items, personalised search (OpenAPI at /docs)."""
    from streamrec.processes import run_server

    settings = Settings() if port is None else Settings().derive(api_port=port)
    with kafka_connection(settings.kafka) as kafka:
        run_until_signal(lambda stop: run_server(settings, kafka, stop))


class Prefer(StrEnum):
    latency = "latency"
    memory = "memory"


def tune(
    version: Annotated[str | None, typer.Option(help="Model version (default: the current one).")] = None,
    recall: Annotated[
        float | None, typer.Option(min=0, max=1, help="Recall floor (default: STREAMREC_TUNE_RECALL; 0: none).")
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
    from streamrec.foundation.topics import Topics
    from streamrec.index.cost import settings_for
    from streamrec.index.tune import tune as run_tune
    from streamrec.plots import tuning_map
    from streamrec.serving.live import FeatureReplica

    given = {
        "tune_recall": recall,
        "tune_p99_ms": p99_ms,
        "tune_bytes_per_item": max_bytes,
        "tune_prefer": prefer and prefer.value,
    }
    settings = Settings().derive(**{name: value for name, value in given.items() if value is not None})
    loaded = load_version(settings, version)
    replica = FeatureReplica(Topics.from_settings(settings.kafka).user_features_changelog)

    async def read_users(kafka: KafkaConnection) -> None:
        await replica.start(kafka)  # reads the changelog to its end
        await replica.stop()

    with kafka_connection(settings.kafka) as kafka:
        asyncio.run(read_users(kafka))
    items = len(loaded.item_ids)
    table = measurement_table(f"model {loaded.version}: {items:,} items", settings.tune_k)
    console.print(f"measuring {loaded.version} ({items:,} items) with up to {settings.tune_queries} user queries ...")
    users = replica.sample(2 * settings.tune_queries)
    tuning = run_tune(loaded, users, settings.tune, on_measured=lambda ms: add_measurements(table, ms))
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
