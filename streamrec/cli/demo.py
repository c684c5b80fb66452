"""`streamrec demo`: every process on one machine, with a dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streamrec.cli.common import broker_name, console, for_one_worker, parse_duration, run_broker, run_until_signal
from streamrec.foundation.settings import Settings


def demo(
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 500.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and write a report (unattended runs).")
    ] = None,
    train_every: Annotated[str, typer.Option(help="How often the trainer refreshes the model (90s, 10m).")] = "90s",
    apache_kafka: Annotated[
        bool,
        typer.Option(
            help="On a one-node Apache Kafka instead of the embedded tansu (needs java and mvn): for long runs, "
            "where tansu's fetches slow down as its logs grow (docs/operations.md)."
        ),
    ] = False,
) -> None:
    """Everything on one machine: broker, worker, trainer, API server and simulated traffic, with a dashboard."""
    from streamrec.demo import EMBEDDED_LINGER_MS, FIVE_MINUTES_S, run_demo, write_report

    parse_duration(train_every)
    settings = for_one_worker(Settings(), apache_kafka)
    embedded = broker_name(settings, apache_kafka) == "tansu"
    with run_broker(settings, apache_kafka, settings.data_dir / "demo" / "kafka") as kafka:
        milestones = run_until_signal(
            lambda stop: run_demo(
                settings,
                kafka,
                stop,
                rate=rate,
                duration=duration,
                train_every=train_every,
                console=Console(),
                linger_ms=EMBEDDED_LINGER_MS if embedded else 10,
            )
        )
    if duration is not None:
        report = write_report(milestones, settings, rate)
        print(Path(report).read_text())
        console.print(f"report written to {report} (with demo.json and demo.png)")
        if not milestones.all_within(FIVE_MINUTES_S):
            console.print("[yellow]not everything was reached within five minutes[/]: see the report")
