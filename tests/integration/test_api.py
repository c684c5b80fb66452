"""The HTTP API on a real broker: bad inputs, live catalog, features, hot swap under load."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Item
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.processes import run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.trainer.announce import announce
from tests.conftest import free_port
from tests.integration.helpers import RunningWorker, until
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"{['red', 'blue', 'green'][n % 3]} lamp {n}", f"c{n % 3}") for n in range(200)]


async def _until_ok(probe, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while True:
        if await probe():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} not seen within {timeout_s}s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(kafka: KafkaConnection, settings) -> AsyncIterator[tuple[httpx.AsyncClient, LiveModel]]:
    """The catalog sent, a worker and an API server running and healthy: an
    HTTP client for the API and the server's live model; all stopped after."""
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(ITEMS)
    worker = await RunningWorker(settings, kafka).start()
    stop = asyncio.Event()
    live = LiveModel(LiveConfig.from_settings(settings))
    server = asyncio.create_task(run_server(settings, kafka, stop, live))
    try:
        async with httpx.AsyncClient(base_url=f"http://{settings.api_host}:{settings.api_port}", timeout=10) as http:
            await until(lambda: live.current is not None, 60, "the first index")
            await _until_ok(lambda: _status(http, "/healthz", 200), 30, "healthz")
            yield http, live
    finally:
        stop.set()
        await server
        await worker.stop()


def test_api_inputs_freshness_and_hot_swap(kafka, settings):
    settings = settings.derive(api_port=free_port(), index_kind="hnsw")
    store = ModelStore.in_data_dir(settings.data_dir)
    first = publish_random_version(store, ITEMS, seed=1)

    async def scenario():
        async with serving(kafka, settings) as (http, live):
            # Bad parameters: 4xx with a message, never a 500.
            for path, code in [
                ("/recommendations/u1?k=0", 422),
                ("/recommendations/u1?k=100000", 422),
                ("/recommendations/u1?k=ten", 422),
                ("/items/nope/similar", 404),
                ("/search?q=", 422),
                ("/search", 422),
                ("/users/x", 404),
                (f"/recommendations/{'u' * 1000}", 422),
            ]:
                answer = await http.get(path)
                assert answer.status_code == code, (path, answer.text)
                assert answer.json().get("detail"), path

            # An unknown user gets the cold-start answer, named with its version.
            cold = (await http.get("/recommendations/nobody?k=5")).json()
            assert [i["item_id"] for i in cold["items"]] == ["i0", "i1", "i2", "i3", "i4"]
            assert cold["model_version"] == first.version

            # Catalog changes reach the index within a second.
            async with ShopProducer(kafka, settings) as producer:
                await producer.send_item(Item("fresh", "purple lamp", "c1"))
                took = await _until_ok(lambda: _status(http, "/items/fresh/similar", 200), 5, "the new item")
                assert took < 1.0, took
                await producer.send_item(Item("i0", ITEMS[0].title, ITEMS[0].category, in_stock=False))
                took = await _until_ok(lambda: _absent(http, "/recommendations/nobody?k=5", "i0"), 5, "i0 out of stock")
                assert took < 1.0, took

                # A user's purchases (through the worker's changelog) are filtered out.
                for n in range(1, 6):
                    await producer.click("buyer", f"i{n}")
                for item in ("i2", "i1", "i1"):
                    await producer.purchase("buyer", item)
            await _until_ok(lambda: _served_personally(http, "buyer"), 10, "the buyer's features")
            await until(lambda: getattr(live.features.get("buyer"), "purchases", 0) == 3, 10, "the buyer's purchases")
            bought = (await http.get("/recommendations/buyer?k=50")).json()
            assert "i1" not in {i["item_id"] for i in bought["items"]} and len(bought["items"]) == 50

            # Buy again is the purchases themselves, the one bought twice first.
            again = (await http.get("/users/buyer/buy-again?k=5&details=true")).json()
            assert [(i["item_id"], i["purchases"]) for i in again["items"]] == [("i1", 2), ("i2", 1)]
            assert again["items"][0]["title"] == ITEMS[1].title and again["source"] == "buy_again"
            assert (await http.get("/users/nobody/buy-again")).json()["items"] == []

            # Hot swap under load: every request answers 200, the version changes.
            failures, versions = [], set()

            async def load():
                while not stop_load.is_set():
                    for path in (
                        "/recommendations/buyer?k=10",
                        "/search?q=red+lamp&user_id=buyer",
                        "/items/i5/similar",
                    ):
                        answer = await http.get(path)
                        if answer.status_code != 200:
                            failures.append((path, answer.status_code))
                        else:
                            versions.add(answer.json()["model_version"])

            stop_load = asyncio.Event()
            loaders = [asyncio.create_task(load()) for _ in range(4)]
            second = publish_random_version(store, ITEMS, seed=2)
            await announce(Topics.from_settings(settings.kafka), kafka, store, second.version)
            await until(lambda: live.version == second.version, 60, "the swap")
            await asyncio.sleep(0.3)
            stop_load.set()
            await asyncio.gather(*loaders)
            assert not failures and versions == {first.version, second.version}

            metrics = (await http.get("/metrics")).text
            assert f'streamrec_model_info{{version="{second.version}"}} 1.0' in metrics
            assert "streamrec_api_request_seconds_bucket" in metrics

    asyncio.run(scenario())


async def _status(http, path, code) -> bool:
    return (await http.get(path)).status_code == code


async def _absent(http, path, item_id) -> bool:
    return item_id not in {i["item_id"] for i in (await http.get(path)).json()["items"]}


async def _served_personally(http, user_id) -> bool:
    cold = (await http.get("/recommendations/nobody?k=10")).json()["items"]
    mine = (await http.get(f"/recommendations/{user_id}?k=10")).json()["items"]
    return mine != cold


def test_cold_start_follows_live_popularity(kafka, settings):
    """A newcomer's answer ranks by what shoppers clicked in the popularity
    window, counted by the workers, not by the version's training counts."""
    settings = settings.derive(api_port=free_port(), index_kind="flat")
    publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS)  # trained popularity: i0 first, i199 last

    async def scenario():
        async with serving(kafka, settings) as (http, _):
            first = (await http.get("/recommendations/newcomer?k=3")).json()["items"]
            assert [i["item_id"] for i in first] == ["i0", "i1", "i2"]
            async with ShopProducer(kafka, settings) as producer:
                for n in range(30):  # the least popular items of the version, clicked now
                    await producer.click(f"s{n}", "i199" if n % 3 else "i198", ts=time.time())

            async def live_order() -> bool:
                answer = (await http.get("/recommendations/newcomer?k=3")).json()["items"]
                return [i["item_id"] for i in answer] == ["i199", "i198", "i0"]

            await _until_ok(live_order, 30, "cold start by live popularity")

    asyncio.run(scenario())
