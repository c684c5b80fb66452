"""`streamrec bench train`: a full refresh against a warm one, on the same data.

The log comes from the simulator (planted tastes, so the model has something
to learn) through a real broker. The trainer first learns all but the newest
`new_events` (the base version). Then the newest events arrive, and the same
trainer state (its cache and model store, copied) refreshes twice: warm, from
the base's weights, and full, from scratch. Both read the new events from
Kafka, build their examples, train, judge on the same test users and publish;
their wall times and test recall are the comparison. Both start with the
cache in memory, as `streamrec train --every` keeps it between refreshes.
"""

from __future__ import annotations

import shutil
import time
import uuid

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import open_cache
from streamrec.trainer.job import RunOutcome
from streamrec.trainer.schedule import train_once


def _figures(outcome: RunOutcome, seconds: float) -> dict:
    training = outcome.manifest.training
    return {
        "kind": training.kind,
        "refresh_s": round(seconds, 1),
        "train_examples": outcome.manifest.data_window.train_examples,
        "epochs": training.epochs,
        "examples_per_s": training.examples_per_s,
        "build_examples_s": training.examples_s,
        "train_s": training.train_s,
        "neighbours_s": training.neighbours_s,
        "judge_s": training.judge_s,  # the new version, the current one, popularity, on the test users
        "recall_at_20": outcome.manifest.metric("test", "recall@20"),
        "popularity_recall_at_20": outcome.manifest.metric("popularity", "recall@20"),
    }


async def _timed_refresh(
    settings: Settings, kafka: KafkaConnection, cache: InteractionCache, on_progress, **how
) -> dict:
    started = time.perf_counter()
    outcome = await train_once(
        TrainerConfig.from_settings(settings), kafka, cache=cache, on_progress=on_progress, **how
    )
    return _figures(outcome, time.perf_counter() - started)


async def bench_train(
    settings: Settings,
    kafka: KafkaConnection,
    events: int,
    users: int,
    items: int,
    new_events: int,
    on_progress=lambda status: None,
    on_phase=lambda phase: None,
) -> dict:
    tag = uuid.uuid4().hex[:8]
    settings = settings.derive(
        **{
            "topic_prefix": f"bench-{tag}.",
            "app_id": f"bench{tag}",
            "data_dir": settings.data_dir / "bench" / tag / "warm",
        }
    )
    shop = Shop(ShopConfig(users=users, items=items, categories=20, seed=11, new_item_every=0))
    log = (record for record in shop.stream(events) if isinstance(record, Event))
    started = time.perf_counter()
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(shop.catalog())
        for _, event in zip(range(events - new_events), log, strict=False):
            await producer.send_event(event)
        produced_s = time.perf_counter() - started
        on_phase(f"base version on {events - new_events} events")
        warm_cache = open_cache(TrainerConfig.from_settings(settings))
        base = await _timed_refresh(settings, kafka, warm_cache, on_progress, full=True)
        for event in log:
            await producer.send_event(event)
    full_settings = settings.derive(data_dir=settings.data_dir.parent / "full")
    shutil.copytree(settings.data_dir, full_settings.data_dir, symlinks=True)  # the same trainer state, twice
    full_cache = open_cache(TrainerConfig.from_settings(full_settings))
    on_phase(f"warm refresh after {new_events} new events")
    warm = await _timed_refresh(settings, kafka, warm_cache, on_progress)
    on_phase("full refresh on the same data")
    full = await _timed_refresh(full_settings, kafka, full_cache, on_progress, full=True)
    return {
        "benchmark": "train",
        "events": events,
        "new_events": new_events,
        "users": users,
        "items": items,
        "simulate_and_produce_s": round(produced_s, 1),
        "base_refresh_s": base["refresh_s"],
        "full_refresh_s": full["refresh_s"],
        "warm_refresh_s": warm["refresh_s"],
        "warm_to_full_time": round(warm["refresh_s"] / full["refresh_s"], 4),
        "full_recall_at_20": full["recall_at_20"],
        "warm_recall_at_20": warm["recall_at_20"],
        "warm_to_full_recall": round(warm["recall_at_20"] / full["recall_at_20"], 4),
        "examples_per_s": full["examples_per_s"],
        "full": full,
        "warm": warm,
    }
