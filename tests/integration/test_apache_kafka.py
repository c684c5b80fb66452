"""What only a real Apache Kafka cluster shows: topics replicated as the
cluster allows, and a forgotten user's rows gone from the compacted changelog."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamrec.foundation.control import send_forget
from streamrec.foundation.kafka import admin_client, partition_for, start_producer
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.shop.producer import ShopProducer
from streamrec.streams.faust_engine import FaustAgents, mount
from tests.integration.helpers import RunningWorker, read_topic, run_scenario, until
from tests.integration.test_soak import held, produce, totals, totals_in_changelogs

TOPIC_CONFIG = 1  # DescribeConfigs' source of a value set on the topic itself
# Roll a segment every 100 ms and clean anything dirty: compaction within seconds, tombstones dropped too.
COMPACT_NOW = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.001",
    "delete.retention.ms": "0",
    "max.compaction.lag.ms": "100",
}


async def _topic_configs(admin, topic: str) -> dict[str, str]:
    """The values set on the topic itself (a just-created topic's reach every broker within moments)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    for _ in range(100):
        described = (await admin.describe_configs([resource]))[0].resources[0][4]
        own = {name: value for name, value, _, source, *_ in described if source == TOPIC_CONFIG}
        if own:
            return own
        await asyncio.sleep(0.1)
    raise AssertionError(f"no configuration of {topic} was described")


async def _partitions(admin, topics: list[str]) -> list[dict]:
    """Every partition of the topics, once each has its partitions in the metadata (just created: moments later)."""
    for _ in range(100):
        described = await admin.describe_topics(topics)
        if all(d["partitions"] for d in described):
            return [p for d in described for p in d["partitions"]]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topics} have no partitions in the metadata")


def test_topics_are_replicated_three_times_with_two_in_sync_on_three_brokers(kafka, settings: Settings):
    async def scenario() -> None:
        await ensure_topics(settings.kafka, kafka)
        topics = Topics.from_settings(settings.kafka)
        admin = admin_client(kafka)
        await admin.start()
        try:
            partitions = await _partitions(admin, [topics.clicks, topics.user_features_changelog])
            values = await _topic_configs(admin, topics.user_features_changelog)
        finally:
            await admin.close()
        assert {len(p["replicas"]) for p in partitions} == {3}
        assert values["min.insync.replicas"] == "2" and values["cleanup.policy"] == "compact"

    run_scenario(scenario)


def test_a_forgotten_users_rows_disappear_from_the_changelog_after_compaction(kafka, settings: Settings):
    topics = Topics.from_settings(settings.kafka)
    # A user in the forgotten one's partition: only new writes there roll the segment holding the tombstone.
    parts = settings.partitions
    kept = next(f"kept{n}" for n in range(1000) if partition_for(f"kept{n}", parts) == partition_for("gone", parts))

    async def scenario() -> None:
        await ensure_topics(settings.kafka, kafka)
        admin = admin_client(kafka)
        await admin.start()
        try:  # AlterConfigs replaces a topic's whole set: streamrec's own configs go back in
            changelog = ConfigResource(ConfigResourceType.TOPIC, topics.user_features_changelog)
            own = await _topic_configs(admin, topics.user_features_changelog)
            assert own["cleanup.policy"] == "compact"
            changelog.configs = {**own, **COMPACT_NOW}
            await admin.alter_configs([changelog])
        finally:
            await admin.close()
        worker = await RunningWorker(settings, kafka).start()
        async with ShopProducer(kafka, settings) as shop:
            for n in range(20):  # many versions of both users' rows
                await shop.click("gone", "i1", event_id=f"g{n}", ts=1000.0 + n)
                await shop.click(kept, "i2", event_id=f"k{n}", ts=1000.0 + n)
                await shop.flush()
                await asyncio.sleep(0.05)
        state = worker.worker
        await until(lambda: state.status.events == 40, 60, "the users' events")

        async def changelog_keys() -> list[bytes]:
            return [r.key for r in await read_topic(kafka, topics.user_features_changelog, settings.partitions)]

        assert b"gone" in await changelog_keys()  # compaction keeps a key's newest row until its tombstone
        producer = await start_producer(kafka)
        try:
            await send_forget(producer, topics, Pseudonyms.from_settings(settings.access), "gone")
        finally:
            await producer.stop()
        await until(lambda: state.status.forgotten == 1, 60, "the forget")

        async with ShopProducer(kafka, settings) as shop:
            for n in range(120):  # new writes roll segments, so the old ones can be cleaned
                if b"gone" not in await changelog_keys():
                    break
                await shop.click(kept, "i3", event_id=f"later{n}", ts=2000.0 + n)
                await shop.flush()
                await asyncio.sleep(0.5)
        keys = await changelog_keys()
        assert b"gone" not in keys, "the forgotten user's rows (and tombstone) are still in the changelog"
        assert kept.encode() in keys  # compaction removed only what was forgotten
        await worker.stop()

    run_scenario(scenario)


class _DiedHere(Exception):
    """A worker's death at one exact moment of its commit."""


async def _die(*_args, **_kwargs) -> None:
    raise _DiedHere


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_crash_between_two_tables_writes_loses_item_and_arm_counts_only_at_least_once(
    kafka, settings: Settings, guarantee
):
    """A worker writes a commit's user rows and dies before its item rows and
    offsets; a new worker restores and replays. User features are exact either
    way (event ids); the replayed events are duplicates to the restored users,
    so at_least_once never counts them for their items and arms, while exactly_once
    aborted the user rows with the rest and counts every event once."""
    settings = settings.derive(processing_guarantee=guarantee, publish_recommendations=False, commit_interval_s=0.5)
    events = 3000

    async def scenario() -> None:
        sent = await produce(kafka, settings, events, users=100)
        first = await RunningWorker(settings, kafka).start()
        await until(lambda: held(first.worker) == sent, 60, "every event folded")
        first.worker.items.write = _die  # the next commit: user rows written, then death
        await until(lambda: first.task.done(), 60, "the first commit")
        assert isinstance(first.task.exception(), _DiedHere)
        await first.crash()

        second = await RunningWorker(settings, kafka).start()
        await until(lambda: held(second.worker) == sent, 60, "every user's events")
        await second.stop()
        counted = await totals_in_changelogs(kafka, settings)  # items' and arms'
        if guarantee == "exactly_once":
            assert counted == totals(events)
        else:  # the documented cost of at_least_once
            assert sum(counted.values()) < sum(totals(events).values())

    run_scenario(scenario)


def _own_app(settings: Settings, kafka) -> tuple[faust.App, FaustAgents]:
    """A shop team's own Faust app (docs/engines.md's example), streamrec's agents mounted."""
    (settings.data_dir / "own-app").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}shop-recs",
        broker=[f"kafka://{a}" for a in kafka.bootstrap.split(",")],
        store="memory://",
        table_standby_replicas=0,
        web_enabled=False,
        autodiscover=False,
        datadir=settings.data_dir / "own-app",
        topic_partitions=settings.partitions,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
    )
    return app, mount(app, settings)


def test_an_app_of_your_own_with_the_agents_mounted_restores_every_row_on_apache_kafka(kafka, settings: Settings):
    """A mounted app keeps Faust's own restore: it asks ListOffsets where a
    changelog ends (`streamrec worker` reads to a fetch's high watermark
    instead, for tansu, which answers a batch short). On Apache Kafka that
    answer is right: the app's next run restores every user exactly."""
    settings = settings.derive(publish_recommendations=False)

    async def scenario() -> None:
        sent = await produce(kafka, settings, 2000, users=40)
        first, recs = _own_app(settings, kafka)
        await first.start()
        try:
            await until(lambda: held(recs) == sent, 90, "every event folded")
            await asyncio.sleep(1.5)  # a timed commit: rows flushed, then offsets
        finally:
            await first.stop()
        second, recs = _own_app(settings, kafka)
        await second.start()
        try:
            await until(lambda: recs.status.ready and held(recs) == sent, 90, "every user restored")
        finally:
            await second.stop()

    run_scenario(scenario)
