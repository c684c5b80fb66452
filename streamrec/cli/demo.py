"""`streamrec demo`: every process on one machine, with a dashboard."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from foundation.kafka import KafkaConnection
from foundation.settings import Settings
from streamrec.broker import kafka_connection
from streamrec.cli.common import console, parse_duration, run_until_signal


@contextlib.contextmanager
def demo_broker(settings: Settings, apache_kafka: bool) -> Iterator[KafkaConnection]:
    """The configured or embedded broker, or a one-node Apache Kafka in DATA_DIR/demo/kafka."""
    if not apache_kafka:
        with kafka_connection(settings) as kafka:
            yield kafka
        return
    from streamrec.apache_kafka import KafkaCluster
    from streamrec.broker import free_ports

    workdir = settings.data_dir / "demo" / "kafka"
    shutil.rmtree(workdir, ignore_errors=True)  # each demo's cluster starts empty, as the embedded one does
    console.print(f"starting a one-node Apache Kafka (logs in {workdir}) ...")
    with KafkaCluster(1, free_ports(2), workdir=workdir) as cluster:
        yield KafkaConnection(cluster.bootstrap)


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
    settings = Settings()
    with demo_broker(settings, apache_kafka) as kafka:
        milestones = run_until_signal(
            lambda stop: run_demo(
                settings,
                kafka,
                stop,
                rate=rate,
                duration=duration,
                train_every=train_every,
                console=Console(),
                linger_ms=10 if apache_kafka or settings.kafka_bootstrap else EMBEDDED_LINGER_MS,
            )
        )
    if duration is not None:
        report = write_report(milestones, settings, rate)
        print(Path(report).read_text())
        console.print(f"report written to {report} (with demo.json and demo.png)")
        if not milestones.all_within(FIVE_MINUTES_S):
            console.print("[yellow]not everything was reached within five minutes[/]: see the report")
