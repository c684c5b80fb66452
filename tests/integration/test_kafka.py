"""Producers on a real broker: a refused idempotent producer is one warning
per process, never an ERROR on a normal start."""

from __future__ import annotations

import asyncio
import logging

from streamrec.foundation.kafka import KafkaConnection, start_producer


def test_producers_start_without_errors_and_a_refusal_is_said_once(kafka, caplog):
    connection = KafkaConnection(kafka.bootstrap)  # fresh: nothing learned about the cluster yet

    async def start_three() -> list[bool]:
        producers = await asyncio.gather(*(start_producer(connection) for _ in range(3)))
        idempotent = [p._txn_manager is not None for p in producers]
        await asyncio.gather(*(p.stop() for p in producers))
        return idempotent

    with caplog.at_level(logging.INFO):
        idempotent = asyncio.run(start_three())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    refusals = [r for r in caplog.records if "refused an idempotent producer" in r.getMessage()]
    if all(idempotent):  # Apache Kafka grants producer ids
        assert refusals == [] and connection.facts.get("idempotence", True)
    else:  # tansu refuses them: said once, and later producers do not ask again
        assert len(refusals) == 1 and connection.facts["idempotence"] is False
