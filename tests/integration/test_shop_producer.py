"""ShopProducer on a real broker under failed sends: every record arrives, or the caller is told."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from aiokafka.errors import KafkaTimeoutError, UnknownError

import streamrec.foundation.kafka
import streamrec.shop.producer as producer_module
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.topics import Topics
from streamrec.shop import ProduceError, ShopProducer
from tests.integration.helpers import read_topic


def failing_sends(monkeypatch, failures: list[BaseException]) -> list[int]:
    """Make the first len(failures) batches the producer sends fail with those
    errors (as a broker or the client's queue would), after which sends succeed."""
    real_start = streamrec.foundation.kafka.start_producer
    attempts: list[int] = []

    async def start(bootstrap: KafkaConnection, **options):
        producer = await real_start(bootstrap, **options)
        real_send = producer.send_batch

        async def send_batch(batch, topic: str, *, partition: int):
            attempts.append(batch.record_count())
            if len(attempts) <= len(failures):
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(failures[len(attempts) - 1])
                return failed
            return await real_send(batch, topic, partition=partition)

        producer.send_batch = send_batch
        return producer

    monkeypatch.setattr(producer_module, "start_producer", start)
    return attempts


async def event_ids(bootstrap: KafkaConnection, settings) -> list[str]:
    """Every event id on the event topics, from the beginning."""
    topics = Topics.from_settings(settings.kafka)
    records = [r for topic in topics.events for r in await read_topic(bootstrap, topic, settings.partitions)]
    return [msgpack.unpackb(r.value)["event_id"] for r in records]


async def send_clicks(producer: ShopProducer, count: int, users: int = 97) -> None:
    """`count` clicks from `users` users (one user: one partition, one batch)."""
    for n in range(count):
        await producer.click(f"u{n % users}", f"i{n % 13}", event_id=f"e{n}", ts=1000.0 + n)


def test_batches_that_fail_with_retriable_errors_are_sent_again_and_all_arrive(kafka, settings, monkeypatch):
    attempts = failing_sends(monkeypatch, [KafkaTimeoutError(), KafkaTimeoutError(), KafkaTimeoutError()])

    async def scenario() -> None:
        async with ShopProducer(kafka, settings, retry_backoff_s=0.01) as producer:
            await send_clicks(producer, 5000)
        assert producer.failed == 0
        ids = await event_ids(kafka, settings)
        assert len(ids) == len(set(ids)) == 5000  # every record once: the retried batches were not sent twice

    asyncio.run(scenario())
    assert len(attempts) > 3


def test_a_batch_that_cannot_be_delivered_reaches_the_caller(kafka, settings, monkeypatch):
    failing_sends(monkeypatch, [UnknownError("the broker said no")])

    async def scenario() -> None:
        producer = await ShopProducer(kafka, settings, linger_ms=5).start()
        await send_clicks(producer, 10, users=1)
        with pytest.raises(ProduceError, match="10 records could not be delivered"):
            await producer.flush()
        with pytest.raises(ProduceError):  # and every later call, until the shop code decides
            await producer.click("u1", "i1")
        with pytest.raises(ProduceError):
            await producer.close()
        assert producer.failed == 10

    asyncio.run(scenario())


def test_retries_give_up_and_say_so(kafka, settings, monkeypatch):
    failing_sends(monkeypatch, [KafkaTimeoutError()] * 3)

    async def scenario() -> None:
        producer = await ShopProducer(kafka, settings, retries=2, retry_backoff_s=0.01).start()
        await send_clicks(producer, 3, users=1)
        with pytest.raises(ProduceError, match="KafkaTimeoutError"):
            await producer.close()

    asyncio.run(scenario())


def test_closing_while_batches_wait_for_a_free_slot_loses_none(kafka, settings, monkeypatch):
    """One batch in flight at a time, each taking 50 ms to be acknowledged, and
    a 1 ms linger: at close, the linger task is waiting for the slot with open
    batches of several partitions to send."""
    real_start = streamrec.foundation.kafka.start_producer

    async def start(bootstrap: KafkaConnection, **options):
        producer = await real_start(bootstrap, **options)
        real_send = producer.send_batch

        async def send_batch(batch, topic: str, *, partition: int):
            await asyncio.sleep(0.05)
            return await real_send(batch, topic, partition=partition)

        producer.send_batch = send_batch
        return producer

    monkeypatch.setattr(producer_module, "start_producer", start)

    async def scenario() -> None:
        async with ShopProducer(kafka, settings, linger_ms=1, max_in_flight=1) as producer:
            for n in range(1000):
                await producer.click(f"u{n % 97}", "i1", event_id=f"e{n}", ts=1000.0 + n)
                if n % 50 == 49:
                    await asyncio.sleep(0.003)  # the linger task takes the open batches and waits for the slot
        ids = await event_ids(kafka, settings)
        assert len(ids) == len(set(ids)) == 1000

    asyncio.run(scenario())
