"""Topic names (the contract of docs/architecture.md) and their creation."""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamrec.foundation.kafka import MAX_MESSAGE_BYTES, KafkaConnection, admin_client
from streamrec.foundation.settings import KafkaSettings

log = logging.getLogger(__name__)

SERVING_RETENTION_HOURS = 24.0  # a stopped server's heartbeats are gone within this


@dataclass(frozen=True)
class Topics:
    """Every topic streamrec reads or writes, and its consumer groups, with the prefix applied."""

    clicks: str
    purchases: str
    catalog: str
    deadletter: str
    recommendations: str
    model_updates: str
    serving: str  # each API server's heartbeat: the version it serves (the console's servers table)
    control: str
    rules: str  # each placement's business rule, keyed by placement (compacted)
    experiments: str  # each placement's experiment, keyed by placement (compacted)
    user_features_changelog: str
    item_stats_changelog: str
    arm_counts_changelog: str  # the clicks and purchases attributed to each arm (foundation.attribution)
    worker_group: str  # the stream workers: one group, co-partitioned assignment
    trainer_group: str  # the trainer's committed positions (its lag is visible)

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> Topics:
        t = settings.topic
        return cls(
            clicks=t("shop.clicks"),
            purchases=t("shop.purchases"),
            catalog=t("shop.catalog"),
            deadletter=t("shop.deadletter"),
            recommendations=t("recs.recommendations"),
            model_updates=t("recs.model-updates"),
            serving=t("recs.serving"),
            control=t("recs.control"),
            rules=t("recs.rules"),
            experiments=t("recs.experiments"),
            user_features_changelog=t(f"{settings.app_id}-user-features-changelog"),
            item_stats_changelog=t(f"{settings.app_id}-item-stats-changelog"),
            arm_counts_changelog=t(f"{settings.app_id}-arm-counts-changelog"),
            worker_group=t(f"{settings.app_id}-worker"),
            trainer_group=t(f"{settings.app_id}-trainer"),
        )

    @property
    def events(self) -> tuple[str, str]:
        return (self.clicks, self.purchases)

    @property
    def changelogs(self) -> tuple[str, str, str]:
        """The workers' tables, partitioned as the events."""
        return (self.user_features_changelog, self.item_stats_changelog, self.arm_counts_changelog)


@dataclass(frozen=True)
class Replication:
    """How many copies of each partition, and how many must hold a write (acks=all)."""

    factor: int
    min_insync: int

    @classmethod
    def for_cluster(cls, settings: KafkaSettings, brokers: int) -> Replication:
        """The settings' replication, resolved against the cluster: 0 means
        min(3, brokers) copies and all but one of them in sync."""
        factor = settings.replication_factor or min(3, brokers)
        min_insync = settings.min_insync_replicas or max(1, factor - 1)
        if factor > brokers:
            raise RuntimeError(
                f"STREAMREC_REPLICATION_FACTOR={factor} but the cluster has {brokers} broker(s): "
                "lower it (0: as many as the cluster allows, up to 3)"
            )
        if min_insync > factor:
            raise RuntimeError(
                f"STREAMREC_MIN_INSYNC_REPLICAS={min_insync} is above the replication factor {factor}: "
                "no write could ever be acknowledged"
            )
        return cls(factor, min_insync)


def topic_specs(settings: KafkaSettings, replication: Replication = Replication(1, 1)) -> list[NewTopic]:
    """Event topics, the control topic and the changelogs share a partition
    count: that is what lets one worker own a user's events, requests and state
    together. Topics holding personal data get the configured retention; the
    changelogs are compacted, never deleted by time."""
    topics = Topics.from_settings(settings)
    n, rf = settings.partitions, replication.factor
    common = {"min.insync.replicas": str(replication.min_insync), "max.message.bytes": str(MAX_MESSAGE_BYTES)}
    compacted = {**common, "cleanup.policy": "compact"}
    events = {**common, **_retention(settings.events_retention_hours)}
    return [
        NewTopic(topics.clicks, n, rf, topic_configs=events),
        NewTopic(topics.purchases, n, rf, topic_configs=events),
        NewTopic(topics.catalog, n, rf, topic_configs=compacted),
        NewTopic(topics.deadletter, n, rf, topic_configs={**common, **_retention(settings.deadletter_retention_hours)}),
        # Compacted too: a forgotten user's tombstone removes their older answers.
        NewTopic(topics.recommendations, n, rf, topic_configs={**events, "cleanup.policy": "compact,delete"}),
        NewTopic(topics.model_updates, 1, rf, topic_configs=common),
        # Heartbeats: compacted to the newest per server.
        NewTopic(
            topics.serving,
            1,
            rf,
            topic_configs={**common, "cleanup.policy": "compact,delete", **_retention(SERVING_RETENTION_HOURS)},
        ),
        NewTopic(topics.control, n, rf, topic_configs=events),
        NewTopic(topics.rules, 1, rf, topic_configs=compacted),
        NewTopic(topics.experiments, 1, rf, topic_configs=compacted),
        NewTopic(topics.user_features_changelog, n, rf, topic_configs=compacted),
        NewTopic(topics.item_stats_changelog, n, rf, topic_configs=compacted),
        NewTopic(topics.arm_counts_changelog, n, rf, topic_configs=compacted),
    ]


def _retention(hours: float) -> dict[str, str]:
    return {"retention.ms": str(int(hours * 3_600_000))} if hours > 0 else {}


async def ensure_topics(settings: KafkaSettings, kafka: KafkaConnection) -> None:
    """Create missing topics; existing ones are left as they are."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if any(spec.name not in existing for spec in topic_specs(settings)):
            await _create_missing(admin, settings, existing)
        await _check_copartitioned(admin, settings)
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: KafkaSettings, existing: set[str]) -> None:
    """Create the missing topics, replicated as the cluster allows (checked against its broker count)."""
    brokers = len((await admin.describe_cluster())["brokers"])
    replication = Replication.for_cluster(settings, brokers)
    missing = [spec for spec in topic_specs(settings, replication) if spec.name not in existing]
    try:
        answer = await admin.create_topics(missing)
    except TopicAlreadyExistsError:
        return
    # Another client may have created some first: say only what this one created.
    created = [topic for topic, code, *_ in answer.topic_errors if code == 0]
    if created:
        log.info("created topics %s (replication %d, min.insync %d)", ", ".join(created), *astuple(replication))


async def _check_copartitioned(admin: AIOKafkaAdminClient, settings: KafkaSettings) -> None:
    """Of the topics this client may describe: a shop's producer, allowed only
    its own topics by the cluster's ACLs, checks those; the worker checks all."""
    topics = Topics.from_settings(settings)
    names = [*topics.events, topics.control, *topics.changelogs]
    described = await admin.describe_topics(names)
    counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
    if len(set(counts.values())) > 1:
        raise RuntimeError(
            f"event topics, the control topic and changelogs must have the same partition count, found {counts}; "
            "recreate them or set STREAMREC_PARTITIONS to match"
        )
