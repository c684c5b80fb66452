"""`streamrec bench scale`: one broker, 1, 2 (...) worker processes in one group.

For each count, fresh topics: the worker processes (`streamrec worker`, each
publishing with an untrained version of the configured size) start and join
first; then, from this process,
1. clicks at a steady rate from random users, and the event-to-publish
   latency each published recommendation carries (its p50/p99);
2. a burst as fast as the producer sends, and the group's events/s (from the
   first event sent to the offset commit that covers the last) and the
   recommendations published per second over the same time.
Every figure is the group's total, read from Kafka (committed offsets, the
recommendations topic), not from the workers' own counters.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
from aiokafka import TopicPartition

from streamrec.bench.freshness import publish_untrained_version
from streamrec.bench.traffic import random_clicks, send_burst, send_paced
from streamrec.broker import free_port
from streamrec.foundation.codec import decode
from streamrec.foundation.kafka import KafkaConnection, read_to_end, reader
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.processes import child_env
from streamrec.shop.producer import ShopProducer


@dataclass
class GroupRun:
    workers: int
    events_per_s: float
    publishes_per_s: float
    p50_ms: float
    p99_ms: float
    burst_events: int
    published: int


def _start_workers(settings: Settings, kafka: KafkaConnection, count: int) -> tuple[list[subprocess.Popen], list[int]]:
    ports = [free_port() for _ in range(count)]
    env = child_env(settings, kafka)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli", "worker", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    return processes, ports


async def _wait_ready(processes: list[subprocess.Popen], ports: list[int], partitions: int) -> None:
    """Every worker answers /healthz and together they hold every partition once."""
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            held = []
            for process, port in zip(processes, ports, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with code {process.returncode}")
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}/healthz")
                    held.append(answer.json().get("partitions", []) if answer.status_code == 200 else None)
                except httpx.HTTPError:
                    held.append(None)
            if all(h for h in held) and sorted(p for h in held for p in h) == list(range(partitions)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not share the partitions within 120 s: {held}")
            await asyncio.sleep(0.2)


class CommittedOffsets:
    """The worker group's committed offsets on the event topics, summed (a
    reader in the group's name that never joins it: it only fetches offsets)."""

    def __init__(self, settings: Settings, kafka: KafkaConnection):
        self.consumer = reader(kafka, group_id=Topics.from_settings(settings.kafka).worker_group)
        self.tps = [
            TopicPartition(t, p)
            for t in Topics.from_settings(settings.kafka).events
            for p in range(settings.partitions)
        ]

    async def __aenter__(self) -> CommittedOffsets:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def total(self) -> int:
        return sum([await self.consumer.committed(tp) or 0 for tp in self.tps])


async def _recommendations(settings: Settings, kafka: KafkaConnection) -> list[dict]:
    topic = Topics.from_settings(settings.kafka).recommendations
    consumer = reader(kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[dict] = []
        await read_to_end(consumer, tps, lambda tp, records: found.extend(decode(r.value) for r in records if r.value))
        return found
    finally:
        await consumer.stop()


async def run_group(
    settings: Settings,
    kafka: KafkaConnection,
    count: int,
    *,
    users: int,
    items: int,
    rate: float,
    seconds: float,
    burst: int,
    on_status: Callable[[str], None],
) -> GroupRun:
    tag = uuid.uuid4().hex[:8]
    settings = settings.derive(
        **{
            "topic_prefix": f"scale-{tag}.",
            "app_id": f"scale{tag}",
            "data_dir": settings.data_dir / "bench" / tag,
        }
    )
    catalog = [Item(f"i{n}", f"item {n} model {n % 97}", f"c{n % 50}", price=5.0 + n % 200) for n in range(items)]
    await ensure_topics(settings.kafka, kafka)
    publish_untrained_version(settings, catalog)
    rng = np.random.default_rng(count)
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(catalog)
        processes, ports = _start_workers(settings, kafka, count)
        try:
            on_status(f"{count} worker(s): starting and sharing {settings.partitions} partitions ...")
            await _wait_ready(processes, ports, settings.partitions)
            await asyncio.sleep(2.0)  # each publisher loads its index once its partitions are restored
            on_status(f"{count} worker(s): {rate:,.0f} events/s for {seconds:.0f} s ...")
            paced_from = time.time()
            sent = await send_paced(producer, users, items, rate, seconds, rng, first=0)
            await producer.flush()
            await asyncio.sleep(2.0)
            paced_to = time.time()
            on_status(f"{count} worker(s): a burst of {burst:,} events ...")
            clicks = random_clicks(rng, users, items, burst, first=sent)
            async with CommittedOffsets(settings, kafka) as committed:
                before = await committed.total()
                started = time.time()
                await send_burst(producer, clicks)
                while await committed.total() < before + burst:
                    if time.time() - started > 600:
                        raise RuntimeError("the burst was not committed within 10 minutes")
                    await asyncio.sleep(0.2)
                finished = time.time()
            await asyncio.sleep(3.0)  # the publishers finish the burst's last users
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    published = await _recommendations(settings, kafka)
    paced = [m["latency_ms"] for m in published if paced_from <= m["ts"] <= paced_to]
    in_burst = [m for m in published if m["ts"] >= started]
    last = max((m["ts"] for m in in_burst), default=finished)
    p50, p99 = np.percentile(paced, [50, 99]) if paced else (0.0, 0.0)
    return GroupRun(
        count,
        burst / (finished - started),
        len(in_burst) / max(last - started, 1e-9),
        float(p50),
        float(p99),
        burst,
        len(in_burst),
    )


async def bench_scale(
    settings: Settings,
    kafka: KafkaConnection,
    *,
    counts: tuple[int, ...],
    users: int,
    items: int,
    rate: float,
    seconds: float,
    burst: int,
    on_status: Callable[[str], None] = lambda line: None,
) -> dict:
    options = {"users": users, "items": items, "rate": rate, "seconds": seconds, "burst": burst}
    runs = [await run_group(settings, kafka, n, **options, on_status=on_status) for n in counts]
    one = runs[0]
    return {
        "benchmark": "scale",
        "users": users,
        "items": items,
        "rate_events_per_s": rate,
        "burst_events": burst,
        "cores": os.cpu_count(),
        "events_per_s": {str(r.workers): round(r.events_per_s) for r in runs},
        "events_per_s_ratio": {str(r.workers): round(r.events_per_s / one.events_per_s, 3) for r in runs},
        "publishes_per_s": {str(r.workers): round(r.publishes_per_s, 1) for r in runs},
        "freshness_p50_ms": {str(r.workers): round(r.p50_ms, 1) for r in runs},
        "freshness_p99_ms": {str(r.workers): round(r.p99_ms, 1) for r in runs},
    }
