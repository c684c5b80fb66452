"""`streamrec broker`, `worker` and `forget`: the broker and the stream side."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from streamrec.broker import EmbeddedBroker, kafka_connection
from streamrec.cli.common import console, run_until_signal
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings


def broker(
    port: Annotated[
        int | None, typer.Option(help="Port, the first node's with --apache-kafka (default: STREAMREC_BROKER_PORT).")
    ] = None,
    apache_kafka: Annotated[
        bool, typer.Option(help="A real Apache Kafka cluster (KRaft, on the local JDK; jars fetched by Maven once).")
    ] = False,
    nodes: Annotated[int, typer.Option(min=1, max=9, help="Apache Kafka nodes, on port, port+1, ...")] = 3,
    data: Annotated[
        Path | None, typer.Option(help="Apache Kafka's log directories (default: a new temporary one).")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Restart an Apache Kafka node that dies (--no-restart leaves it down).")
    ] = True,
) -> None:
    """Run a broker until Ctrl-C: the embedded tansu (memory storage), or an Apache
    Kafka cluster that keeps serving while a majority of its nodes lives."""
    settings = Settings()
    port = port or settings.broker_port
    # The handlers only note the request: stopping (and waiting for) the broker
    # inside a handler that interrupts a wait on the same process hung for ever.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if apache_kafka:
        failure = _run_apache_kafka(nodes, port, settings.broker_host, data, restart, stop)
    else:
        failure = _run_tansu(settings.broker_host, port, stop)
    if failure:
        console.print(f"[red]error:[/] {failure}")
        raise typer.Exit(1)


def _run_apache_kafka(
    nodes: int, port: int, host: str, data: Path | None, restart: bool, stop: threading.Event
) -> str | None:
    from streamrec.apache_kafka import KAFKA_VERSION, KafkaCluster, supervise

    cluster = KafkaCluster(nodes, port, host, workdir=data).start()
    console.print(
        f"Apache Kafka {KAFKA_VERSION}: {nodes} nodes on [bold]{cluster.bootstrap}[/] (logs and data in "
        f"{cluster.workdir}); Ctrl-C stops it"
    )
    try:
        return supervise(cluster, stop, lambda line: console.print(line, markup=False, highlight=False), restart)
    finally:
        cluster.stop()


def _run_tansu(host: str, port: int, stop: threading.Event) -> str | None:
    running = EmbeddedBroker(host, port).start()
    console.print(f"broker listening on [bold]{running.bootstrap}[/] (memory storage); Ctrl-C stops it")
    try:
        while running.running() and not stop.wait(0.2):
            pass
        return None if stop.is_set() else "the broker exited by itself (see its log)"
    finally:
        running.stop()


def worker(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: STREAMREC_WORKER_PORT).")] = None,
) -> None:
    """Run a stream worker: features, item statistics, dead letters, GET /users/{id}."""
    from streamrec.processes import run_worker

    settings = Settings() if port is None else Settings().derive(worker_port=port)
    with kafka_connection(settings.kafka) as kafka:
        run_until_signal(lambda stop: run_worker(settings, kafka, stop))


def forget(user_id: Annotated[str, typer.Argument(help="The shop's id of the user.")]) -> None:
    """Forget a user everywhere: the workers' features and changelog, the servers' replicas,
    the published recommendations and the trainer's cache (via the recs.control topic)."""
    from streamrec.foundation.control import send_forget
    from streamrec.foundation.kafka import start_producer
    from streamrec.foundation.privacy import Pseudonyms
    from streamrec.foundation.topics import Topics, ensure_topics

    settings = Settings()
    if not 0 < len(user_id) <= settings.max_id_chars:
        console.print(f"[red]error:[/] a user id has 1 to {settings.max_id_chars} characters")
        raise typer.Exit(2)

    async def go(kafka: KafkaConnection) -> Any:
        await ensure_topics(settings.kafka, kafka)
        producer = await start_producer(kafka)
        try:
            return await send_forget(
                producer, Topics.from_settings(settings.kafka), Pseudonyms.from_settings(settings.access), user_id
            )
        finally:
            await producer.stop()

    with kafka_connection(settings.kafka) as kafka:
        sent = asyncio.run(go(kafka))
    console.print(
        f"forget request for {user_id!r} stored at {sent.topic}[{sent.partition}]@{sent.offset}: "
        "the owning worker acts within its commit interval, the trainer at its next refresh"
    )
