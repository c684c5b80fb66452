"""The worker of the configured engine (`STREAMREC_ENGINE`)."""

from __future__ import annotations

from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.kafka import KafkaConnection
from streamrec.streams.metrics import WorkerMetrics
from streamrec.streams.state import StreamEngine, WorkerConfig
from streamrec.streams.worker import StreamWorker


def stream_worker(
    settings: WorkerConfig,
    kafka: KafkaConnection,
    *,
    catalog: CatalogView | None = None,
    metrics: WorkerMetrics | None = None,
) -> StreamEngine:
    """A worker on `settings.worker.engine`: batch (StreamWorker) or faust (FaustWorker)."""
    if settings.worker.engine == "faust":
        from streamrec.streams.faust_engine import FaustWorker  # faust-streaming loads only on this engine

        return FaustWorker(settings, kafka, catalog=catalog, metrics=metrics)
    return StreamWorker(settings, kafka, catalog=catalog, metrics=metrics)
