"""`streamrec bench freshness`: event-to-published-recommendation latency, and
how many recommendations a worker publishes per second when pushed.

One worker with its publisher, a model version over the catalog (a random
two-tower of the configured size: latency does not depend on what it learned)
and the configured index, on a real broker; the clicks come from a process of
their own (`bench.traffic`), as a shop's do. Phase one sends clicks at a fixed
rate from random users and reports the latency each publish carries (event
time to publish). Phase two sends a burst as fast as the producer can and
reports publishes per second while the publisher keeps up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from streamrec.bench.traffic import Traffic
from streamrec.embeddings.encoding import ModelConfig
from streamrec.embeddings.model import TwoTower
from streamrec.embeddings.versions import publish_model
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import Manifest, ModelStore
from streamrec.processes import WorkerProcess
from streamrec.shop.producer import ShopProducer


def publish_untrained_version(settings: Settings, items: list[Item]) -> str:
    """A current version over `items` with the configured model size."""
    model = TwoTower(ModelConfig.from_settings(settings)).eval()
    return publish_model(ModelStore.in_data_dir(settings.data_dir), model, items, None, Manifest(created=time.time()))


def machine_baseline_ms() -> float:
    """A fixed single-core Python workload (a million dict writes and reads),
    best of three: this machine's speed, to read the other figures against
    (machines of the same kind differ 3-4x)."""
    times = []
    for _ in range(3):
        started, table = time.perf_counter(), {}
        for n in range(1_000_000):
            table[n & 4095] = table.get(n & 4095, 0) + n
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 1)


async def bench_freshness(
    settings: Settings,
    kafka: KafkaConnection,
    *,
    users: int,
    items: int,
    rate: float,
    seconds: float,
    burst: int,
    on_status: Callable[[str], None] = lambda text: None,
) -> dict:
    tag = uuid.uuid4().hex[:8]
    settings = settings.derive(
        **{
            "topic_prefix": f"bench-{tag}.",
            "app_id": f"bench{tag}",
            "data_dir": settings.data_dir / "bench" / tag,
            "publish_recommendations": True,
        }
    )
    catalog = [Item(f"i{n}", f"item {n} model {n % 97}", f"c{n % 50}", price=5.0 + n % 200) for n in range(items)]
    on_status(f"publishing a model over {items:,} items ...")
    version = publish_untrained_version(settings, catalog)
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(catalog)
    async with Traffic(settings, kafka, users, items) as traffic:
        stop = asyncio.Event()
        process = WorkerProcess(settings, kafka)
        worker = process.worker
        running = asyncio.create_task(process.run(stop))
        try:
            on_status(f"building the {settings.index_kind} index in the worker ...")
            while not process.publishing:
                if running.done():
                    running.result()
                await asyncio.sleep(0.1)
            publisher = process.publisher
            status = publisher.status
            on_status("warming up ...")
            await traffic.paced(rate, 3.0)
            await asyncio.sleep(1.0)
            status.latencies_ms.clear()
            on_status(f"{rate:,.0f} events/s for {seconds:.0f} s ...")
            published_before = status.published
            sent = await traffic.paced(rate, seconds)
            await asyncio.sleep(1.0)
            p50, p99 = status.percentiles()
            paced_published = status.published - published_before

            on_status(f"a burst of {burst:,} events ...")
            await traffic.prepare_burst(burst)
            published_before, coalesced_before = status.published, status.coalesced
            started = time.monotonic()
            await traffic.burst()
            sent_s = time.monotonic() - started
            # Done when publishing started, then nothing is left to read or publish and it went quiet.
            folded_s = None
            while (
                status.published == published_before
                or worker.lag()
                or publisher.waiting
                or time.monotonic() - status.last_publish < 1.0
            ):
                if time.monotonic() - started > 300:
                    raise RuntimeError("the burst was not published within 5 minutes")
                if folded_s is None and not worker.lag():
                    folded_s = time.monotonic() - started
                await asyncio.sleep(0.05)
            burst_s = status.last_publish - started
            burst_published = status.published - published_before
        finally:
            stop.set()
            await running
    return {
        "benchmark": "freshness",
        "machine_baseline_ms": machine_baseline_ms(),
        "users": users,
        "items": items,
        "index": settings.index_kind,
        "model_version": version,
        "partitions": settings.partitions,
        "publisher_processes": settings.publisher_processes,
        "rate_events_per_s": rate,
        "seconds": seconds,
        "events_sent": sent,
        "published": paced_published,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "burst_events": burst,
        "burst_sent_s": round(sent_s, 2),
        "burst_folded_s": round(folded_s or 0.0, 2),
        "burst_published": burst_published,
        "burst_s": round(burst_s, 2),
        "publishes_per_s": round(burst_published / burst_s, 1),
        "coalesced_in_burst": status.coalesced - coalesced_before,
    }
