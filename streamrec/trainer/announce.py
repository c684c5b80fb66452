"""Telling workers and servers that a version is current: `recs.model-updates`."""

from __future__ import annotations

from streamrec.foundation.codec import encode
from streamrec.foundation.kafka import KafkaConnection, start_producer
from streamrec.foundation.store import MODEL_NAME, ModelStore
from streamrec.foundation.topics import Topics
from streamrec.trainer.gate import GATE_K


def announcement(store: ModelStore, version: str) -> dict:
    """The `recs.model-updates` value: which version, where, and how good."""
    manifest = store.load_manifest(version)
    return {
        "model": manifest.model,
        "version": version,
        "path": str(store.root / version),
        "created": manifest.created,
        f"recall@{GATE_K}": manifest.metric("test", f"recall@{GATE_K}"),
        f"popularity_recall@{GATE_K}": manifest.metric("popularity", f"recall@{GATE_K}"),
    }


async def announce(topics: Topics, kafka: KafkaConnection, store: ModelStore, version: str) -> None:
    """Tell workers and servers on `recs.model-updates` that `version` is current."""
    producer = await start_producer(kafka)
    try:
        await producer.send_and_wait(
            topics.model_updates,
            encode(announcement(store, version)),
            key=MODEL_NAME.encode(),
        )
    finally:
        await producer.stop()
