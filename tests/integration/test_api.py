"""The HTTP API on a real broker: bad inputs, live catalog, features, hot swap under load."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import InvalidRecord, Item
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.trainer.announce import announce
from tests.conftest import free_port
from tests.integration.helpers import Recommendations, RunningWorker, until
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
async def serving(
    kafka: KafkaConnection, settings, *, publishing: bool = False
) -> AsyncIterator[tuple[httpx.AsyncClient, LiveModel]]:
    """The catalog sent, a worker (`publishing`: with its publisher, as
    `streamrec worker` runs) and an API server running and healthy: an HTTP
    client for the API and the server's live model; all stopped after."""
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(ITEMS)
    stop = asyncio.Event()
    if publishing:
        process = WorkerProcess(settings, kafka)
        worker = asyncio.create_task(process.run(stop))
    else:
        running = await RunningWorker(settings, kafka).start()
    live = LiveModel(LiveConfig.from_settings(settings))
    server = asyncio.create_task(run_server(settings, kafka, stop, live))
    try:
        async with httpx.AsyncClient(base_url=f"http://{settings.api_host}:{settings.api_port}", timeout=10) as http:
            await until(lambda: live.current is not None, 60, "the first index")
            await _until_ok(lambda: _status(http, "/healthz", 200), 30, "healthz")
            if publishing:
                await until(lambda: process.publishing, 60, "the publisher's index")
            yield http, live
    finally:
        stop.set()
        await server
        await (worker if publishing else running.stop())


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


READ, ADMIN = {"X-API-Key": "reader"}, {"X-API-Key": "admin"}
C0 = {item.item_id for item in ITEMS if item.category == "c0"}


@pytest.mark.parametrize("publisher_processes", [0, 1], ids=["on-the-worker-loop", "answering-process"])
def test_a_rule_changed_through_the_api_holds_in_the_next_answers_and_the_published_ones(
    kafka, settings, publisher_processes
):
    """A merchandiser's rule, set with an admin key: in force in this server's
    next answer, in every one of 1,000 random requests after, and in the
    worker's published answers within 5 s; removed, the items come back."""
    settings = settings.derive(
        api_port=free_port(),
        index_kind="hnsw",
        api_keys="reader",
        admin_api_keys="admin",
        publisher_processes=publisher_processes,
    )
    publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS, seed=1)
    rule = {"exclude_categories": ["c0"], "promoted": ["i5"], "promoted_slot": 1}
    topic = Topics.from_settings(settings.kafka).recommendations

    async def scenario():
        recs = await Recommendations(kafka, topic, settings.kafka.partitions).start()
        async with serving(kafka, settings, publishing=True) as (http, live):
            for headers, body, code in [(READ, rule, 403), ({}, rule, 401), (ADMIN, {"max_price": -1}, 422)]:
                assert (await http.put("/rules/default", json=body, headers=headers)).status_code == code
            assert (await http.put("/rules/no%20spaces", json=rule, headers=ADMIN)).status_code == 422
            async with ShopProducer(kafka, settings) as producer:
                for n in range(20):
                    await producer.click(f"u{n}", f"i{3 * n}")  # c0 items: their nearest are c0 too
            await until(lambda: all(live.features.get(f"u{n}") for n in range(20)), 30, "the users' features")

            started = time.monotonic()
            assert (await http.put("/rules/default", json=rule, headers=ADMIN)).status_code == 200
            assert time.monotonic() - started < 5.0
            async with ShopProducer(kafka, settings) as producer:
                await _published_under(producer, recs, lambda items: not C0 & set(items) and items[1] == "i5", started)
            draw = random.Random(3)
            for _ in range(1000):
                path = draw.choice(
                    [
                        f"/recommendations/u{draw.randrange(25)}?k=20",
                        f"/items/i{draw.randrange(200)}/similar?k=20",
                        f"/items/i{draw.randrange(200)}/bought-together?k=20",
                        f"/search?q={draw.choice(['red', 'blue', 'green'])}+lamp&k=20",
                    ]
                )
                answer = (await http.get(path, headers=READ)).json()["items"]
                assert len(answer) == 20 and not C0 & {i["item_id"] for i in answer}, path
            first = (await http.get("/recommendations/u1?k=5", headers=READ)).json()["items"]
            assert first[1] == {**first[1], "item_id": "i5", "source": "promoted"}

            listed = (await http.get("/rules", headers=READ)).json()
            assert listed == [{"placement": "default", "rule": {**Rule().model_dump(mode="json"), **rule}}]
            assert (await http.get("/rules/elsewhere", headers=READ)).status_code == 404
            assert (await http.delete("/rules/default", headers=ADMIN)).status_code == 200
            back = (await http.get("/items/i3/similar?k=50", headers=READ)).json()["items"]
            assert C0 & {i["item_id"] for i in back}
        await recs.stop()

    asyncio.run(scenario())


async def _published_under(producer: ShopProducer, recs: Recommendations, follows, since: float) -> None:
    """A new user's click every 0.2 s until the answer published for it
    `follows` the rule, within 5 s of `since`; then every answer does."""
    for n in range(1000):
        event_id = (await producer.click(f"p{n}", f"i{3 * n % 200}")).event_id
        await producer.flush()
        await until(lambda: recs.for_user(f"p{n}", event_id), 5, "a published answer")  # noqa: B023
        if follows([i["item_id"] for i in recs.for_user(f"p{n}", event_id)[-1]["items"]]):
            break
        assert time.monotonic() - since < 5.0, "the published answers did not follow the rule within 5 s"
        await asyncio.sleep(0.2)
    after = [(f"q{m}", (await producer.click(f"q{m}", f"i{3 * m}")).event_id) for m in range(5)]
    await producer.flush()
    await until(lambda: all(recs.for_user(user, e) for user, e in after), 5, "published answers")
    for user, event_id in after:
        items = [i["item_id"] for i in recs.for_user(user, event_id)[-1]["items"]]
        assert follows(items), items


def test_a_variants_attributed_clicks_and_purchases_equal_the_simulated_ones_exactly(kafka, settings):
    """An experiment set through the API splits the placement's users as its
    hash says, each variant answering under its own rule; the clicks and
    purchases sent back with the answers' ids are counted per variant exactly
    (a duplicate once, a malformed id dead-lettered), beside the answers made."""
    settings = settings.derive(api_port=free_port(), api_keys="reader", admin_api_keys="admin")
    publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS, seed=2)
    experiment = {
        "name": "spring",
        "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "rule_placement": "no-c0"}],
    }

    async def scenario():
        async with serving(kafka, settings) as (http, live):
            assert (await http.put("/experiments/home", json=experiment, headers=READ)).status_code == 403
            lopsided = {**experiment, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]}
            assert (await http.put("/experiments/home", json=lopsided, headers=ADMIN)).status_code == 422
            assert (await http.put("/rules/no-c0", json={"exclude_categories": ["c0"]}, headers=ADMIN)).is_success
            assert (await http.put("/experiments/home", json=experiment, headers=ADMIN)).status_code == 200

            expected = {"a": [0, 0, 0, 0.0], "b": [0, 0, 0, 0.0]}  # answers, clicks, purchases, revenue
            draw = random.Random(5)
            async with ShopProducer(kafka, settings) as producer:
                for n in range(60):
                    answer = (await http.get(f"/recommendations/u{n}?placement=home&k=10", headers=READ)).json()
                    variant = answer["variant"]
                    assert variant == live.experiments.get("home").variant_for(f"u{n}").name
                    assert variant == "a" or not C0 & {i["item_id"] for i in answer["items"]}
                    counts, rid = expected[variant], answer["recommendation_id"]
                    counts[0] += 1
                    item = answer["items"][0]["item_id"]
                    if draw.random() < 0.7:
                        click = await producer.click(f"u{n}", item, recommendation_id=rid)
                        await producer.send_event(click)  # sent twice: counted once
                        counts[1] += 1
                    if draw.random() < 0.3:
                        await producer.purchase(f"u{n}", item, recommendation_id=rid, price=2.5, quantity=2)
                        counts[2], counts[3] = counts[2] + 1, counts[3] + 5.0
                await producer.click("u1", "i1", recommendation_id="home~spring~c~0123456789abcdef")  # no such variant
                await producer.click("u2", "i1")  # no id: nobody's
                with pytest.raises(InvalidRecord, match="recommendation_id"):  # the SDK checks it before sending
                    await producer.click("u3", "i1", recommendation_id="home~spring")

            async def results() -> dict[str, dict]:
                return {r["variant"]: r for r in (await http.get("/experiments/home", headers=READ)).json()["results"]}

            async def counted() -> bool:
                got = {
                    v: [r["answers"], r["clicks"], r["purchases"], r["revenue"]] for v, r in (await results()).items()
                }
                return got == expected

            await until(counted, 30, f"the attributed counts {expected}")
            a = (await results())["a"]
            assert a["ctr"]["low"] < a["clicks"] / a["answers"] == a["ctr"]["value"] < a["ctr"]["high"]
            assert min(expected["a"][0], expected["b"][0]) > 15  # both variants answered
            metrics = (await http.get("/metrics", headers=READ)).text
            purchases, answers = float(expected["b"][2]), float(expected["b"][0])  # labels print sorted
            assert f'_events{{experiment="spring",placement="home",type="purchase",variant="b"}} {purchases}' in metrics
            assert f'streamrec_answers{{experiment="spring",placement="home",variant="b"}} {answers}' in metrics
            assert (await http.get("/experiments", headers=READ)).json()[0]["placement"] == "home"
            assert (await http.delete("/experiments/home", headers=ADMIN)).status_code == 200
            after = (await http.get("/recommendations/u1?placement=home", headers=READ)).json()
            assert "variant" not in after and after["recommendation_id"].startswith("home~~~")

    asyncio.run(scenario())
