"""The trainer against a real broker: read the log, train, publish, announce, refresh."""

from __future__ import annotations

import asyncio

from streamrec.foundation.codec import decode
from streamrec.foundation.schema import Event
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import open_cache
from streamrec.trainer.schedule import train_every, train_once
from tests.integration.helpers import read_topic


def _small(settings):
    return settings.derive(
        **{
            "model_dim": 16,
            "model_hidden": 32,
            "model_id_buckets": 4096,
            "model_text_buckets": 4096,
            "model_max_recent": 10,
            "train_epochs": 3,
            "train_batch_size": 128,
            "train_random_negatives": 64,
        }
    )


async def _send(bootstrap, settings, records) -> int:
    async with ShopProducer(bootstrap, settings) as producer:
        for record in records:
            if isinstance(record, Event):
                await producer.send_event(record)
            else:
                await producer.send_item(record)
    return sum(isinstance(r, Event) for r in records)


def test_train_publishes_announces_and_reads_only_new_events(kafka, settings):
    settings = _small(settings)
    shop = Shop(ShopConfig(users=150, items=120, categories=6, seed=3, new_item_every=0))
    records = [*shop.catalog(), *shop.stream(5000)]

    async def scenario():
        first_batch = await _send(kafka, settings, records[:4000])
        first = await train_once(TrainerConfig.from_settings(settings), kafka)
        assert first.promoted and first.reason == "first version"
        store = ModelStore.in_data_dir(settings.data_dir)
        assert store.current() == first.version
        manifest = store.load_manifest(first.version)
        assert manifest.data_window.events == first_batch
        assert manifest.params.model["dim"] == 16 and manifest.model_config["dim"] == 16 and manifest.gate.passed
        assert manifest.metric("test", "users") == manifest.data_window.test_examples > 10  # held-out users

        more = await _send(kafka, settings, records[4000:])
        skipped = await train_once(TrainerConfig.from_settings(settings), kafka, min_new_events=more + 1)
        assert skipped.version is None and f"{more} new events" in skipped.reason
        assert (
            len(open_cache(TrainerConfig.from_settings(settings)).events) == first_batch + more
        )  # read once each, nothing twice

        announcements = await read_topic(kafka, Topics.from_settings(settings.kafka).model_updates, 1)
        assert [decode(r.value)["version"] for r in announcements] == [first.version]
        assert announcements[0].key == b"two-tower"

    asyncio.run(scenario())


def test_a_scheduled_trainer_refreshes_warm_from_its_cache_in_memory(kafka, settings):
    settings = _small(settings)
    shop = Shop(ShopConfig(users=150, items=120, categories=6, seed=4, new_item_every=0))
    records = [*shop.catalog(), *shop.stream(5000)]
    total = sum(isinstance(r, Event) for r in records)

    async def scenario():
        first_batch = await _send(kafka, settings, records[:4000])
        stop, outcomes = asyncio.Event(), []
        schedule = asyncio.create_task(
            train_every(
                TrainerConfig.from_settings(settings),
                kafka,
                stop,
                0.2,
                min_new_events=total - first_batch,
                on_outcome=outcomes.append,
            )
        )
        while not any(o.version for o in outcomes):
            await asyncio.sleep(0.1)
        await _send(kafka, settings, records[4000:])  # skipped until all of them are there
        while not any(o.version and o.manifest.data_window.events == total for o in outcomes):
            await asyncio.sleep(0.1)
        stop.set()
        await schedule
        trained = [o.manifest.training for o in outcomes if o.version]
        assert [(t.kind, t.base) for t in trained] == [("full", None), ("warm", outcomes[0].version)]
        assert len(open_cache(TrainerConfig.from_settings(settings)).events) == total  # on disk too, each event once

    asyncio.run(asyncio.wait_for(scenario(), 180))
