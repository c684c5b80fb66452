"""`streamrec bench broker`: does a fetch get slower as a partition's log grows?

The demo's latency grew with its uptime at a steady load. The cause was the
embedded broker: tansu 0.6's memory storage lists every batch a partition
holds on each fetch that returns records, so a fetch costs time in
proportion to the batches kept, and a stream of small batches (a shop
producing events one by one) makes every later fetch slower. This measures
it the way it happened: one partition, batches of one record written one at
a time; after each step, the median time to fetch the newest record. Apache
Kafka finds a batch through its offset index, and stays flat.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from streamrec.foundation.kafka import KafkaConnection, admin_client, reader, start_producer

FETCHES = 30  # per step: the median of these is reported
VALUE = b"x" * 200  # about an event's size


@dataclass(frozen=True)
class FetchStep:
    batches: int  # batches the partition holds
    fetch_ms: float  # median time to fetch the newest record


async def fetch_times(kafka: KafkaConnection, steps: tuple[int, ...], progress=print) -> list[FetchStep]:
    """Grow one partition to each of `steps` batches of one record; time fetches of its newest."""
    topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = await start_producer(kafka, linger_ms=0)
    consumer = reader(kafka)
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    written, results = 0, []
    try:
        for target in steps:
            while written < target:
                await (await producer.send(topic, VALUE))  # acknowledged before the next: one batch each
                written += 1
            times = []
            for _ in range(FETCHES):
                consumer.seek(partition, written - 1)
                started = time.perf_counter()
                await consumer.getone(partition)
                times.append((time.perf_counter() - started) * 1000)
            results.append(FetchStep(written, round(statistics.median(times), 2)))
            progress(f"  {written:,} batches: fetch {results[-1].fetch_ms} ms")
    finally:
        await consumer.stop()
        await producer.stop()
    return results
