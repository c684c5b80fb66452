"""Privacy on a real broker: a forgotten user is gone from every place the
product keeps them, and with pseudonymisation on no raw user id is stored,
published or logged while answers for raw ids stay what they were."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.foundation.codec import decode
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import ShopConfig
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import open_cache, refresh_cache
from tests.conftest import free_port
from tests.integration.helpers import read_topic, until
from tests.versions import publish_trained_version

SHOP = ShopConfig(users=200, items=200, categories=5, seed=2, new_item_every=0)
ADMIN, READER = {"X-API-Key": "admin-key"}, {"X-API-Key": "read-key"}


def _private(settings: Settings, **more) -> Settings:
    return settings.derive(
        **{
            "api_port": free_port(),
            "publish_interval_s": 0.05,
            "index_kind": "flat",
            "api_keys": SecretStr("read-key"),
            "admin_api_keys": SecretStr("admin-key"),
            **more,
        }
    )


class Running:
    """A worker (with its publisher) and an API server in this event loop."""

    def __init__(self, settings: Settings, kafka: KafkaConnection):
        self.settings, self.kafka = settings, kafka
        self.stop = asyncio.Event()
        self.process = WorkerProcess(settings, kafka)
        self.live = LiveModel(LiveConfig.from_settings(settings))
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Running:
        self.tasks = [
            asyncio.create_task(self.process.run(self.stop)),
            asyncio.create_task(run_server(self.settings, self.kafka, self.stop, self.live)),
        ]
        await until(lambda: self.process.publishing and self.live.current is not None, 60, "worker and server")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    def worker_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.settings.worker.url, timeout=10)

    def api_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://{self.settings.api_host}:{self.settings.api_port}", timeout=10)


async def _clicks(
    kafka: KafkaConnection, settings: Settings, users: list[str], item_ids: list[str], each: int = 5
) -> None:
    async with ShopProducer(kafka, settings) as producer:
        for user in users:
            for item_id in item_ids[:each]:
                await producer.click(user, item_id, ts=time.time())


def _latest(records: list, key: str) -> list:
    """Every value written under `key`, oldest first."""
    return [record.value for record in records if record.key == key.encode()]


@pytest.mark.parametrize("publisher_processes", [0, 2], ids=["answers-in-the-worker", "answers-in-processes"])
def test_a_forgotten_user_is_gone_everywhere_and_stays_gone(kafka, settings, publisher_processes):
    settings = _private(
        settings, worker_metrics_port=free_port(), api_metrics_port=free_port(), publisher_processes=publisher_processes
    )
    topics = Topics.from_settings(settings.kafka)
    _, items = publish_trained_version(ModelStore.in_data_dir(settings.data_dir), SHOP, events=4000, epochs=2)
    item_ids = [item.item_id for item in items]

    async def scenario() -> None:
        async with ShopProducer(kafka, settings) as producer:
            await producer.send_catalog(items)
        async with Running(settings, kafka) as running, running.worker_http() as worker:
            live, publisher = running.live, running.process.publisher
            await _clicks(kafka, settings, ["victim", "bystander"], item_ids)
            await until(lambda: live.features.get("victim") and live.features.get("bystander"), 30, "the replica")
            await until(lambda: publisher.status.published >= 2, 30, "published answers")
            cache = open_cache(TrainerConfig.from_settings(settings))
            await refresh_cache(TrainerConfig.from_settings(settings), kafka, cache)
            assert {e.user_id for e in cache.events} == {"victim", "bystander"}

            assert (await worker.delete("/users/victim")).status_code == 401
            assert (await worker.delete("/users/victim", headers=READER)).status_code == 403
            answer = await worker.delete("/users/victim", headers=ADMIN)
            assert answer.status_code == 202, answer.text
            assert (await worker.delete("/users/victim", headers=ADMIN)).status_code == 202  # idempotent

            await until(lambda: live.features.get("victim") is None, 30, "the replica to drop the user")
            async with httpx.AsyncClient(timeout=10) as internal:  # metrics on their own ports, still keyed
                worker_metrics = f"http://{settings.worker_host}:{settings.worker_metrics_port}/metrics"
                api_metrics = f"http://{settings.api_host}:{settings.api_metrics_port}/metrics"
                assert (await internal.get(worker_metrics)).status_code == 401
                # Counted once the commit that wrote the tombstone has committed its offsets too.
                forgets = 'streamrec_worker_events_total{outcome="forget"} 2.0'

                async def counted() -> bool:
                    return forgets in (await internal.get(worker_metrics, headers=READER)).text

                await until(counted, 30, f"{forgets} on the worker's /metrics")
                assert "streamrec_index_items 200.0" in (await internal.get(api_metrics, headers=READER)).text
            assert (await worker.get("/metrics", headers=READER)).status_code == 404
            assert (await worker.get("/users/victim", headers=ADMIN)).status_code == 404
            assert (await worker.get("/users/bystander", headers=ADMIN)).json()["clicks"] == 5
            assert live.features.get("bystander") is not None

        changelog = await read_topic(kafka, topics.user_features_changelog, settings.partitions)
        assert _latest(changelog, "victim")[-1] is None and _latest(changelog, "bystander")[-1] is not None
        recommendations = await read_topic(kafka, topics.recommendations, settings.partitions)
        assert _latest(recommendations, "victim")[:-1] and _latest(recommendations, "victim")[-1] is None
        assert _latest(recommendations, "bystander")[-1] is not None

        refresh = await refresh_cache(TrainerConfig.from_settings(settings), kafka, cache)
        assert refresh.forgotten == 1
        assert {e.user_id for e in cache.events} == {"bystander"}
        reopened = open_cache(TrainerConfig.from_settings(settings))  # what is on disk, not only in memory
        assert {e.user_id for e in reopened.events} == {"bystander"}
        assert not any(b"victim" in path.read_bytes() for path in cache.directory.iterdir())

        # A restarted worker restores from the changelog: the user stays gone,
        # and a later event starts a fresh profile.
        async with Running(settings, kafka) as running, running.worker_http() as worker:
            assert (await worker.get("/users/victim", headers=ADMIN)).status_code == 404
            await _clicks(kafka, settings, ["victim"], item_ids, each=1)
            await until(lambda: running.live.features.get("victim") is not None, 30, "the fresh profile")
            assert (await worker.get("/users/victim", headers=ADMIN)).json()["clicks"] == 1

    asyncio.run(scenario())


def test_with_pseudonymisation_no_raw_id_is_kept_and_answers_are_unchanged(kafka, settings, caplog, monkeypatch):
    settings = _private(settings, pseudonymise_key=SecretStr("a-secret-key-from-the-vault"))
    topics = Topics.from_settings(settings.kafka)
    _, items = publish_trained_version(ModelStore.in_data_dir(settings.data_dir), SHOP, events=4000, epochs=2)
    item_ids = [item.item_id for item in items]
    raw = ["alice-raw-7f3a", "bob-raw-c41d"]
    caplog.set_level(logging.INFO)

    async def scenario() -> dict:
        async with ShopProducer(kafka, settings) as producer:
            await producer.send_catalog(items)
        async with Running(settings, kafka) as running, running.worker_http() as worker, running.api_http() as api:
            publisher = running.process.publisher
            await _clicks(kafka, settings, raw, item_ids)
            await until(lambda: len(running.live.features) == 2 and publisher.status.published >= 2, 30, "the users")
            for user in raw:  # the shop's ids still work at every endpoint
                profile = (await worker.get(f"/users/{user}", headers=ADMIN)).json()
                assert profile["user_id"] == user and profile["clicks"] == 5
            answer = (await api.get(f"/recommendations/{raw[0]}", headers=READER)).json()
            current = running.live.current
            row = running.live.features.get(Pseudonyms.from_settings(settings.access)(raw[0]))
            assert row is not None and row.user_id != raw[0]
            # The answer for the raw id is the one for the same history kept under the raw id.
            expected = [s.item_id for s in current.recommend(dataclasses.replace(row, user_id=raw[0]), 10)]
            assert [i["item_id"] for i in answer["items"]] == expected
            assert expected != [s.item_id for s in current.recommend(None, 10)]  # personalised, not cold start
            await refresh_cache(
                TrainerConfig.from_settings(settings), kafka, open_cache(TrainerConfig.from_settings(settings))
            )
        return {
            "changelog": await read_topic(kafka, topics.user_features_changelog, settings.partitions),
            "recommendations": await read_topic(kafka, topics.recommendations, settings.partitions),
        }

    stored = asyncio.run(scenario())
    for name, records in stored.items():
        for record in records:
            blob = (record.key or b"") + (record.value or b"")
            assert not any(user.encode() in blob for user in raw), f"a raw id in {name}"
    assert {decode(r.value)["user_id"] for r in stored["recommendations"]} == {
        r.key.decode() for r in stored["recommendations"]
    }
    cache_files = list(open_cache(TrainerConfig.from_settings(settings)).directory.iterdir())
    assert cache_files and not any(user.encode() in path.read_bytes() for path in cache_files for user in raw)
    # Every INFO record of the product and its libraries; the test's own HTTP
    # client logs its URLs (the `streamrec` command sets httpx to WARNING).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "trainer cache" in logged and not any(user in logged for user in raw)

    # Forgetting by the raw id reaches the pseudonymised row (through the CLI).
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("STREAMREC_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("STREAMREC_APP_ID", settings.app_id)
    monkeypatch.setenv("STREAMREC_PARTITIONS", str(settings.partitions))
    monkeypatch.setenv("STREAMREC_PSEUDONYMISE_KEY", settings.pseudonymise_key.get_secret_value())
    result = CliRunner().invoke(app, ["forget", raw[0]])
    assert result.exit_code == 0, result.output

    async def forgotten() -> None:
        async with Running(settings, kafka) as running:
            await until(lambda: len(running.live.features) == 1, 30, "the forgotten user's row to go")

    asyncio.run(forgotten())
