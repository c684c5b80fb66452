"""`streamrec bench train`: training examples/s and the time of a full refresh.

A full refresh is what `streamrec train` does on a fresh data directory: read
the whole log from Kafka into the cache, rebuild the examples, train (early
stopping decides the epochs unless capped), evaluate, publish. The events come
from the simulator (planted tastes, so the model has something to learn) and
go through a real broker first.
"""

from __future__ import annotations

import time
import uuid

from foundation.schema import Event
from foundation.settings import Settings
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from trainer.schedule import train_once


async def bench_train(settings: Settings, bootstrap: str, events: int, users: int, items: int,
                      on_progress=lambda status: None) -> dict:  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    settings = settings.model_copy(update={"topic_prefix": f"bench-{tag}.", "app_id": f"bench{tag}",
                                           "data_dir": settings.data_dir / "bench" / tag})  # fmt: skip
    shop = Shop(ShopConfig(users=users, items=items, categories=20, seed=11, new_item_every=0))
    started = time.perf_counter()
    async with ShopProducer(bootstrap, settings) as producer:
        await producer.send_catalog(shop.catalog())
        for record in shop.stream(events):
            if isinstance(record, Event):
                await producer.send_event(record)
    produced_s = time.perf_counter() - started
    started = time.perf_counter()
    outcome = await train_once(settings, bootstrap, on_progress=on_progress)
    refresh_s = time.perf_counter() - started
    manifest = outcome.manifest
    training = manifest.training
    return {
        "benchmark": "train",
        "events": events,
        "users": users,
        "items": items,
        "device": manifest.device,
        "train_examples": manifest.data_window.train_examples,
        "epochs": training["epochs"],
        "examples_per_s": training["examples_per_s"],
        "simulate_and_produce_s": round(produced_s, 1),
        "full_refresh_s": round(refresh_s, 1),
        "read_log_s": round(refresh_s - training["seconds"], 1),
        "build_examples_s": training["examples_s"],
        "train_s": training["train_s"],
        "recall_at_20": manifest.metric("test", "recall@20"),
        "popularity_recall_at_20": manifest.metric("popularity", "recall@20"),
    }
