"""The worker of the configured engine."""

from __future__ import annotations

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings
from streamrec.streams.engines import stream_worker
from streamrec.streams.faust_engine import FaustWorker
from streamrec.streams.state import StreamEngine, WorkerConfig
from streamrec.streams.worker import StreamWorker

KAFKA = KafkaConnection("127.0.0.1:9")


def test_the_batch_engine_is_the_default_and_faust_is_chosen_by_its_setting():
    batch = stream_worker(WorkerConfig.from_settings(Settings()), KAFKA)
    faust = stream_worker(WorkerConfig.from_settings(Settings(engine="faust")), KAFKA)
    assert type(batch) is StreamWorker and type(faust) is FaustWorker
    assert isinstance(batch, StreamEngine) and isinstance(faust, StreamEngine)
    assert batch.kafka is KAFKA and faust.kafka is KAFKA
