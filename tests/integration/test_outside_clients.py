"""Events from clients streamrec did not write: confluent-kafka (librdkafka, the
client behind Go, .NET, PHP, Node and many Python shops) with its default
partitioner, beside aiokafka, give exactly the expected features."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from confluent_kafka import Producer

from streamrec.foundation.codec import encode
from streamrec.foundation.kafka import KafkaConnection, partition_for
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.processes import WorkerProcess
from streamrec.shop import ShopProducer
from tests.integration.helpers import read_topic, until

USERS = 40


def _event(n: int, user: int, kind: str = "click") -> dict:
    return {"event_id": f"ck{n}", "type": kind, "user_id": f"u{user}", "item_id": f"i{n % 7}", "ts": 1000.0 + n}


def produce_with_librdkafka(bootstrap: KafkaConnection, topics: Topics) -> Counter:
    """Clicks keyed by user with librdkafka's default partitioner (CRC32):
    single JSON values, msgpack values and JSON batches. Returns clicks per user."""
    producer = Producer({"bootstrap.servers": bootstrap.bootstrap, "acks": "all", "linger.ms": 5})
    expected: Counter = Counter()
    failures: list[str] = []

    def delivered(error, message) -> None:
        if error is not None:
            failures.append(str(error))

    n = 0
    for round_no in range(3):
        for user in range(USERS):
            key = f"u{user}".encode()
            if round_no == 0:
                value = json.dumps(_event(n, user)).encode()
                n, count = n + 1, 1
            elif round_no == 1:
                value = encode(_event(n, user))
                n, count = n + 1, 1
            else:
                value = json.dumps([_event(n + k, user) for k in range(3)]).encode()
                n, count = n + 3, 3
            producer.produce(topics.clicks, value=value, key=key, on_delivery=delivered)
            expected[f"u{user}"] += count
    assert producer.flush(30) == 0 and not failures, failures
    return expected


def test_librdkafka_default_partitioner_and_aiokafka_give_exact_features(kafka, settings):
    settings = settings.derive(publish_recommendations=False, partitions=8)
    topics = Topics.from_settings(settings.kafka)

    async def scenario() -> None:
        await ensure_topics(settings.kafka, kafka)
        expected = produce_with_librdkafka(kafka, topics)
        async with ShopProducer(kafka, settings) as shop:  # a second producer, murmur2 like Java
            for user in range(USERS):
                await shop.click(f"u{user}", "i1", event_id=f"ak{user}", ts=5000.0)
                expected[f"u{user}"] += 1
        landed = await read_topic(kafka, topics.clicks, settings.partitions)
        misplaced = sum(1 for r in landed if r.partition != partition_for(r.key.decode(), settings.partitions))
        assert misplaced > 0, "librdkafka's default partitioner should have disagreed with murmur2 for some users"

        stop = asyncio.Event()
        process = WorkerProcess(settings, kafka)
        running = asyncio.create_task(process.run(stop))
        total = sum(expected.values())
        try:
            await until(lambda: process.worker.status.events >= total or running.done(), 60, "every event folded")
            if running.done():
                running.result()
            rows = [(partition, user_id, user) for partition, user_id, user in process.worker.users.items()]
            assert sorted(user_id for _, user_id, _ in rows) == sorted(expected)  # one row per user
            for partition, user_id, user in rows:
                assert partition == partition_for(user_id, settings.partitions)
                assert user.clicks == expected[user_id], user_id
            assert process.worker.status.events == total and process.worker.status.duplicates == 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.worker_port}", timeout=5) as http:
                for user_id, clicks in expected.items():
                    answer = await http.get(f"/users/{user_id}")
                    assert answer.status_code == 200 and answer.json()["clicks"] == clicks
        finally:
            stop.set()
            await running

    asyncio.run(scenario())
