"""`streamrec bench ingest`: worker throughput beside raw consumption, one run.

All sides read the same events from the same broker in the same process
run: first a bare aiokafka consumer that only decodes msgpack (the ceiling),
then a worker of each engine asked for (batch, faust) that validates,
de-duplicates, folds every event into user features and item statistics,
writes the changelogs and commits offsets (durable state, the product's
guarantees), in each processing guarantee asked for (exactly_once: every
commit a Kafka transaction; Apache Kafka only). Each engine and guarantee
runs as its own app (group and changelogs), so each does the whole work. The
ratio to raw is the cost of all that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import msgpack
from aiokafka import TopicPartition

from streamrec.foundation.kafka import KafkaConnection, reader
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics
from streamrec.shop.producer import ShopProducer
from streamrec.streams.engines import stream_worker
from streamrec.streams.state import WorkerConfig


@dataclass
class IngestResult:
    events: int
    users: int
    produce_events_per_s: float
    raw_events_per_s: float
    events_per_s: dict[str, float]  # by run: the engine, +exactly_once in that mode
    changelog_writes: dict[str, int]

    def ratio(self, engine: str) -> float:
        return self.events_per_s[engine] / self.raw_events_per_s

    def to_json(self) -> dict:
        return {
            "benchmark": "ingest",
            "events": self.events,
            "users": self.users,
            "produce_events_per_s": round(self.produce_events_per_s),
            "raw_events_per_s": round(self.raw_events_per_s),
            "events_per_s": {engine: round(value) for engine, value in self.events_per_s.items()},
            "ratio": {engine: round(self.ratio(engine), 3) for engine in self.events_per_s},
            "changelog_writes": self.changelog_writes,
        }


async def produce(settings: Settings, kafka: KafkaConnection, events: int, users: int, items: int) -> float:
    """Send a catalog and `events` clicks/purchases; returns events/s produced."""
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(Item(f"i{i}", f"item {i}", f"c{i % 20}", price=9.99) for i in range(items))
        started = time.perf_counter()
        base_ts = time.time() - events / 1000
        for n in range(events):
            kind = "purchase" if n % 10 == 9 else "click"
            event = Event(f"b{n}", kind, f"u{(n * 7919) % users}", f"i{(n * 104729) % items}", base_ts + n / 1000)
            await producer.send_event(event)
        await producer.flush()
    return events / (time.perf_counter() - started)


async def raw_consume(settings: Settings, kafka: KafkaConnection, events: int) -> float:
    """Consume-and-decode with a bare aiokafka consumer: the ceiling."""
    topics = Topics.from_settings(settings.kafka)
    consumer = reader(kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics.events for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        unpack = msgpack.unpackb
        started = time.perf_counter()
        while seen < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=settings.max_batch_events)
            for records in batches.values():
                for record in records:
                    unpack(record.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def worker_consume(settings: Settings, kafka: KafkaConnection, events: int) -> tuple[float, int]:
    """Events/s through a worker of `settings.engine`, from its partitions'
    restore to the last event counted (the batch engine counts at commit,
    the faust engine as it folds)."""
    worker = stream_worker(WorkerConfig.from_settings(settings), kafka)
    await worker.start()
    running = asyncio.create_task(worker.run())
    try:
        while not worker.status.ready:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        while worker.status.events + worker.status.duplicates < events:
            if running.done():
                running.result()
            await asyncio.sleep(0.005)
        return events / (time.perf_counter() - started), worker.users.writes + worker.items.writes
    finally:
        worker.stop()
        await running
        await worker.close()


async def bench_ingest(
    settings: Settings,
    kafka: KafkaConnection,
    events: int,
    users: int,
    items: int,
    engines: tuple[str, ...] = ("batch",),
    guarantees: tuple[str, ...] = ("at_least_once",),
) -> IngestResult:
    """Fresh topics (a unique prefix) so that every run measures the same work."""
    run = settings.derive(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    produced = await produce(run, kafka, events, users, items)
    raw = await raw_consume(run, kafka, events)
    per_s, writes = {}, {}
    for engine in engines:
        for guarantee in guarantees:
            label = engine if guarantee == "at_least_once" else f"{engine}+{guarantee}"
            app_id = f"{run.app_id}-{engine}" + ("" if guarantee == "at_least_once" else "-exactly-once")
            app = run.derive(engine=engine, processing_guarantee=guarantee, app_id=app_id)
            per_s[label], writes[label] = await worker_consume(app, kafka, events)
    return IngestResult(events, users, produced, raw, per_s, writes)
