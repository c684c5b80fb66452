"""The real-time loop on a real broker: events in, recommendations out, a
user's category shift seen within a second (published and over HTTP), and a
model swap that loses no recommendation."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.foundation.attribution import Arm, arm_of
from streamrec.foundation.placement_book import DEFAULT_PLACEMENT
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import ShopConfig
from streamrec.trainer.announce import announce
from tests.conftest import free_port
from tests.integration.helpers import Recommendations, until
from tests.versions import publish_random_version, publish_trained_version

SHOP = ShopConfig(users=300, items=300, categories=6, seed=1, new_item_every=0)


def _share(item_ids: list[str], category: str, category_of: dict[str, str]) -> float:
    return sum(category_of[i] == category for i in item_ids) / max(1, len(item_ids))


@pytest.mark.parametrize("publisher_processes", [0, 2], ids=["answers-in-the-worker", "answers-in-processes"])
def test_recommendations_follow_each_event_and_survive_a_swap(kafka, settings, publisher_processes):
    settings = settings.derive(
        api_port=free_port(), publish_interval_s=0.1, index_kind="flat", publisher_processes=publisher_processes
    )
    store = ModelStore.in_data_dir(settings.data_dir)
    version, items = publish_trained_version(store, SHOP)
    category_of = {i.item_id: i.category for i in items}
    counts = Counter(category_of.values())
    first_category, second_category = (c for c, _ in counts.most_common(2))
    firsts = [i.item_id for i in items if i.category == first_category]
    seconds = [i.item_id for i in items if i.category == second_category]

    async def scenario():
        async with ShopProducer(kafka, settings) as producer:
            await producer.send_catalog(items)
        stop = asyncio.Event()
        process = WorkerProcess(settings, kafka)
        running = asyncio.create_task(process.run(stop))
        live = LiveModel(LiveConfig.from_settings(settings))
        server = asyncio.create_task(run_server(settings, kafka, stop, live))
        recs = await Recommendations(
            kafka, Topics.from_settings(settings.kafka).recommendations, settings.partitions
        ).start()
        try:
            await until(
                lambda: process.publishing,
                60,
                "the publisher's index",
            )
            await until(lambda: live.current is not None, 60, "the server's index")
            async with (
                ShopProducer(kafka, settings) as producer,
                httpx.AsyncClient(base_url=f"http://{settings.api_host}:{settings.api_port}", timeout=10) as http,
            ):
                # A user into one category ...
                for item_id in firsts[:6]:
                    last = await producer.click("shifter", item_id, ts=time.time())
                await producer.flush()
                await until(lambda: recs.for_user("shifter", last.event_id), 10, "the first recommendation")
                before = [i["item_id"] for i in recs.for_user("shifter", last.event_id)[-1]["items"]]
                assert before and _share(before, first_category, category_of) >= 0.5, before

                # ... starts clicking another: it rises within a second.
                for item_id in seconds[:6]:
                    last = await producer.click("shifter", item_id, ts=time.time())
                await producer.flush()
                sent = time.monotonic()
                await until(lambda: recs.for_user("shifter", last.event_id), 5, "the shifted recommendation")
                took = time.monotonic() - sent
                message = recs.for_user("shifter", last.event_id)[-1]
                after = [i["item_id"] for i in message["items"]]
                assert took < 1.0, took
                assert _share(after, second_category, category_of) > _share(before, second_category, category_of)
                assert _share(after, second_category, category_of) >= 0.5, after
                assert message["model_version"] == version.version and 0 <= message["latency_ms"] < 1000
                assert arm_of(message["recommendation_id"]) == Arm(DEFAULT_PLACEMENT)  # to send back with a click
                assert len(after) == settings.publish_k

                async def http_shifted() -> bool:
                    answer = (await http.get("/recommendations/shifter?k=10")).json()
                    return _share([i["item_id"] for i in answer["items"]], second_category, category_of) >= 0.5

                await until(http_shifted, 5, "the HTTP answer to follow the shift")

                # A swap while 40 users click: each user's newest event gets its recommendation.
                newer = publish_random_version(store, items, seed=3)
                lasts = {}
                announced = asyncio.create_task(
                    announce(Topics.from_settings(settings.kafka), kafka, store, newer.version)
                )
                for round_ in range(3):
                    for u in range(40):
                        event = await producer.click(f"crowd{u}", firsts[(u + round_) % len(firsts)], ts=time.time())
                        lasts[f"crowd{u}"] = event.event_id
                    await producer.flush()
                    await asyncio.sleep(0.3)
                await announced
                await until(
                    lambda: all(recs.for_user(u, e) for u, e in lasts.items()), 30, "every user's newest recommendation"
                )
                await until(lambda: process.publisher.model_version == newer.version, 30, "the swap in the worker")
                await producer.click("after-swap", firsts[0], ts=time.time())
                await producer.flush()
                await until(lambda: recs.for_user("after-swap"), 10, "a recommendation after the swap")
                assert recs.for_user("after-swap")[-1]["model_version"] == newer.version
        finally:
            await recs.stop()
            stop.set()
            await asyncio.gather(running, server)

    asyncio.run(scenario())


def test_bench_freshness_ends_with_its_json_contract(kafka, settings, monkeypatch):
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STREAMREC_WORKER_PORT", str(free_port()))
    args = [
        "bench",
        "freshness",
        "--users",
        "300",
        "--items",
        "500",
        "--rate",
        "200",
        "--seconds",
        "2",
        "--burst",
        "300",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["published"] > 0 and 0 < report["p50_ms"] <= report["p99_ms"] and report["publishes_per_s"] > 0
