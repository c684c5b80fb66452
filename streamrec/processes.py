"""The processes, wired: a worker with its publisher, an API server, and the
trainer's index tuning.

Composition lives here, at the top, so that the domain packages never reach
for each other: the worker knows nothing of the publisher, the publisher
nothing of the worker; `WorkerProcess` hands each the other's typed parts.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import socket
from typing import TYPE_CHECKING

from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.http import Access, metrics_app, serve_http
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.popular import LivePopularity
from streamrec.foundation.schema import Limits
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.streams.assignor import group_workers
from streamrec.streams.engines import stream_worker
from streamrec.streams.state import WorkerConfig
from streamrec.streams.web import create_worker_api, render_metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from streamrec.serving.answers import Answering, Report
    from streamrec.serving.live import LiveModel
    from streamrec.serving.publisher import RecommendationPublisher
    from streamrec.trainer.job import IndexChooser

log = logging.getLogger(__name__)


class WorkerProcess:
    """One worker process: the stream loop, its HTTP port and, unless
    `publish_recommendations` is off, the real-time publisher.

    Worker and publisher share one catalog view (the worker reads the catalog
    topic, the publisher's index takes the changes) and the publisher reads
    features straight from the worker's tables. With `publisher_processes` the
    answers come from processes of their own, which follow the catalog themselves. Watchers (the demo, the
    freshness benchmark, tests) read `worker` and `publisher` while it runs.
    """

    def __init__(self, settings: Settings, kafka: KafkaConnection):
        self.settings = settings
        self.kafka = kafka
        publishing = settings.publisher.publish_recommendations
        topics = Topics.from_settings(settings.kafka)
        in_process = publishing and not settings.publisher.processes  # whose index takes the worker's catalog changes
        self.catalog = CatalogView(topics.catalog, Limits.from_settings(settings), track_changes=in_process)
        self.worker = stream_worker(WorkerConfig.from_settings(settings), kafka, catalog=self.catalog)
        self.publisher: RecommendationPublisher | None = None  # set once its index is loaded

    @property
    def publishing(self) -> bool:
        """The worker's partitions are restored and its publisher serves a model."""
        return self.worker.status.ready and self.publisher is not None and self.publisher.model_version is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then flush, commit and leave the group cleanly."""
        own, worker = self.settings.worker, self.worker
        await worker.start()
        tasks = {
            asyncio.create_task(serve_http(create_worker_api(worker, self._publisher_view), own.host, own.port, stop)),
            asyncio.create_task(worker.run()),
        }
        if own.metrics_port:
            metrics = metrics_app(lambda: render_metrics(worker), Access.from_settings(self.settings.access))
            tasks.add(asyncio.create_task(serve_http(metrics, own.host, own.metrics_port, stop)))
        if self.settings.publisher.publish_recommendations:
            self.publisher = await self._start_publisher()
            tasks.add(asyncio.create_task(self.publisher.run(stop)))
        log.info("worker up: HTTP %s, group %s", own.url, worker.topics.worker_group)
        try:
            done, _ = await asyncio.wait(
                {*tasks, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done & tasks:
                task.result()  # a crashed loop or a port in use ends the worker with its error
        finally:
            worker.stop()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.close()

    def _publisher_view(self) -> dict | None:
        return self.publisher.view() if self.publisher is not None else None

    async def _start_publisher(self) -> RecommendationPublisher:
        from streamrec.serving.publisher import RecommendationPublisher, export_metrics
        from streamrec.serving.publisher_process import PublisherProcesses

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("faiss") is None:
            raise RuntimeError(
                "publishing recommendations needs PyTorch and FAISS: pip install 'streamrec[cpu]' "
                "(or run the worker with STREAMREC_PUBLISH_RECOMMENDATIONS=false)"
            )
        settings, worker = self.settings, self.worker
        publishing = settings.publisher
        answering: Callable[[Report], Answering]
        if publishing.processes:
            # started by the publisher's run
            answering = functools.partial(PublisherProcesses.spawn, settings, self.kafka)
        else:
            from streamrec.serving.live import LiveConfig, LiveModel  # torch and faiss load only where the answers are
            from streamrec.serving.loop_answering import LoopAnswering

            live = LiveModel(LiveConfig.from_settings(settings), sample_users=worker.sample_users, catalog=self.catalog)
            await live.start(self.kafka)
            answering = functools.partial(
                LoopAnswering,
                live,
                worker.producer,
                worker.topics.recommendations,
                k=publishing.k,
                explain=publishing.explanations,
                placement=publishing.placement,
            )
        fallback = LivePopularity(
            worker.live_popularity, self.catalog.items, settings.affinity_half_life_s, settings.exclude_clicked
        )
        publisher = RecommendationPublisher(
            answering,
            worker.users.get,
            worker.producer,
            worker.topics.recommendations,
            fallback,
            k=publishing.k,
            interval_s=publishing.interval_s,
            batch_size=settings.index_batch_size,
            placement=publishing.placement,
        )
        worker.watch_users(publisher.note)
        export_metrics(publisher, worker.metrics.registry)
        return publisher


def child_env(settings: Settings, kafka: KafkaConnection) -> dict[str, str]:
    """The environment of a `streamrec` child (worker, trainer, server) on the
    same broker, topics, group and store as `settings`."""
    return {
        **os.environ,
        "STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "STREAMREC_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "STREAMREC_APP_ID": settings.kafka.app_id,
        "STREAMREC_DATA_DIR": str(settings.data_dir),
        "STREAMREC_PARTITIONS": str(settings.kafka.partitions),
    }


async def run_worker(settings: Settings, kafka: KafkaConnection, stop: asyncio.Event) -> WorkerProcess:
    """A worker process (with its publisher) until `stop`."""
    process = WorkerProcess(settings, kafka)
    await process.run(stop)
    return process


async def run_server(
    settings: Settings, kafka: KafkaConnection, stop: asyncio.Event, live: LiveModel | None = None
) -> LiveModel:
    """The HTTP API until `stop`: follow the catalog, features and model
    versions and serve; pass a `live` model to watch it (tests, the demo)."""
    from streamrec.serving.api import ApiMetrics, create_api
    from streamrec.serving.console import add_console
    from streamrec.serving.live import LiveConfig, LiveModel
    from streamrec.serving.placement_api import PlacementWriter
    from streamrec.serving.pulse import Pulse

    await ensure_topics(settings.kafka, kafka)
    live = live or LiveModel(LiveConfig.from_settings(settings))
    api_settings = settings.api
    await live.start(kafka)
    follow = asyncio.create_task(live.follow(stop))
    log.info(
        "API on http://%s:%d (OpenAPI at /docs, the console at /console), model %s",
        api_settings.host,
        api_settings.port,
        live.version,
    )
    metrics = ApiMetrics(live)
    access = Access.from_settings(settings.access)
    local_worker = (settings.worker.url, access.sign(settings.worker.url))
    server = f"{socket.gethostname()}:{api_settings.port}"  # a pod's name in Kubernetes: one per replica
    pulse = Pulse(
        kafka,
        Topics.from_settings(settings.kafka),
        live.item_stats,
        access,
        group_workers,
        local_worker,
        server,
        lambda: live.version,
        live.answers,
    )
    writer = PlacementWriter(kafka, access)
    api = create_api(live, metrics, writer, pulse.answers)
    add_console(api, live, pulse, functools.partial(rollback_and_announce, settings, kafka))
    tasks = {
        follow,
        asyncio.create_task(pulse.run(stop)),
        asyncio.create_task(serve_http(api, api_settings.host, api_settings.port, stop)),
    }
    if api_settings.metrics_port:
        internal = metrics_app(metrics.render, access)
        tasks.add(asyncio.create_task(serve_http(internal, api_settings.host, api_settings.metrics_port, stop)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a crashed follower or a port in use ends the server with its error
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await writer.stop()
        await live.stop()
    return live


async def rollback_and_announce(settings: Settings, kafka: KafkaConnection) -> str:
    """The console's rollback: the previous version current again, announced to every process."""
    from streamrec.foundation.store import ModelStore
    from streamrec.trainer.announce import announce

    store = ModelStore.in_data_dir(settings.data_dir)
    version = store.rollback()
    await announce(Topics.from_settings(settings.kafka), kafka, store, version)
    return version


def index_chooser(settings: Settings) -> IndexChooser | None:
    """With `STREAMREC_INDEX_TUNE`, the trainer's hook that tunes each new
    version's index once, for every server and worker (trainer and index meet here)."""
    if not settings.tune.index_tune:
        return None

    from streamrec.foundation.store import ModelStore
    from streamrec.index.tune import choose_for_version

    return functools.partial(choose_for_version, ModelStore.in_data_dir(settings.data_dir), settings.tune)
