"""Topic names (the contract of docs/architecture.md) and their creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from foundation.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """Every topic streamrec reads or writes, with the prefix applied."""

    clicks: str
    purchases: str
    catalog: str
    deadletter: str
    recommendations: str
    model_updates: str
    user_features_changelog: str
    item_stats_changelog: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        t = settings.topic
        return cls(
            clicks=t("shop.clicks"),
            purchases=t("shop.purchases"),
            catalog=t("shop.catalog"),
            deadletter=t("shop.deadletter"),
            recommendations=t("recs.recommendations"),
            model_updates=t("recs.model-updates"),
            user_features_changelog=t(f"{settings.app_id}-user-features-changelog"),
            item_stats_changelog=t(f"{settings.app_id}-item-stats-changelog"),
        )

    @property
    def events(self) -> tuple[str, str]:
        return (self.clicks, self.purchases)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Event topics and their changelogs share a partition count: that is what
    lets one worker own a user's events and that user's state together."""
    topics = Topics.from_settings(settings)
    n, rf = settings.partitions, settings.replication_factor
    compacted = {"cleanup.policy": "compact"}
    return [
        NewTopic(topics.clicks, n, rf),
        NewTopic(topics.purchases, n, rf),
        NewTopic(topics.catalog, n, rf, topic_configs=compacted),
        NewTopic(topics.deadletter, n, rf),
        NewTopic(topics.recommendations, n, rf),
        NewTopic(topics.model_updates, 1, rf),
        NewTopic(topics.user_features_changelog, n, rf, topic_configs=compacted),
        NewTopic(topics.item_stats_changelog, n, rf, topic_configs=compacted),
    ]


async def ensure_topics(settings: Settings, bootstrap: str) -> None:
    """Create missing topics; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.debug("another process created the topics first")
            log.info("created topics %s", ", ".join(spec.name for spec in missing))
        await _check_copartitioned(admin, settings)
    finally:
        await admin.close()


async def _check_copartitioned(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    topics = Topics.from_settings(settings)
    names = [*topics.events, topics.user_features_changelog, topics.item_stats_changelog]
    described = await admin.describe_topics(names)
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    if len(set(counts.values())) != 1:
        raise RuntimeError(
            f"event topics and changelogs must have the same partition count, found {counts}; "
            "recreate them or set STREAMREC_PARTITIONS to match"
        )
