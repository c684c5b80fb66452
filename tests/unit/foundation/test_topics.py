"""Topic specs: co-partitioning and the retention of personal data."""

from __future__ import annotations

import pytest

from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import MAX_MESSAGE_BYTES, Replication, Topics, topic_specs


def test_topics_with_personal_data_get_the_configured_retention():
    settings = Settings(events_retention_hours=24, deadletter_retention_hours=1, partitions=6)
    topics = Topics.from_settings(settings.kafka)
    specs = {spec.name: spec for spec in topic_specs(settings.kafka)}
    day, hour = str(24 * 3_600_000), str(3_600_000)
    for name in (*topics.events, topics.control, topics.recommendations):
        assert specs[name].topic_configs["retention.ms"] == day, name
    assert specs[topics.deadletter].topic_configs["retention.ms"] == hour
    assert specs[topics.recommendations].topic_configs["cleanup.policy"] == "compact,delete"  # tombstones erase
    assert {specs[n].num_partitions for n in (*topics.events, topics.control, topics.user_features_changelog)} == {6}


def test_zero_hours_leaves_retention_to_the_broker():
    settings = Settings(events_retention_hours=0, deadletter_retention_hours=0)
    serving = Topics.from_settings(settings.kafka).serving  # servers' heartbeats: no personal data, a day
    specs = topic_specs(settings.kafka)
    assert all("retention.ms" not in spec.topic_configs for spec in specs if spec.name != serving)


def test_the_replication_fits_the_cluster_three_and_two_on_three_brokers():
    assert Replication.for_cluster(Settings().kafka, brokers=1) == Replication(1, 1)  # the embedded broker
    assert Replication.for_cluster(Settings().kafka, brokers=3) == Replication(3, 2)
    assert Replication.for_cluster(Settings().kafka, brokers=7) == Replication(3, 2)
    assert Replication.for_cluster(Settings(replication_factor=2, min_insync_replicas=2).kafka, 5) == Replication(2, 2)


def test_a_replication_the_cluster_cannot_hold_is_refused_with_what_to_change():
    with pytest.raises(RuntimeError, match="STREAMREC_REPLICATION_FACTOR=3 but the cluster has 1 broker"):
        Replication.for_cluster(Settings(replication_factor=3).kafka, brokers=1)
    with pytest.raises(RuntimeError, match="MIN_INSYNC_REPLICAS=3 is above the replication factor 2"):
        Replication.for_cluster(Settings(replication_factor=2, min_insync_replicas=3).kafka, brokers=3)


def test_every_topic_is_replicated_as_resolved_and_the_changelogs_are_compacted_not_deleted_by_time():
    settings = Settings()
    topics = Topics.from_settings(settings.kafka)
    specs = {spec.name: spec for spec in topic_specs(settings.kafka, Replication(3, 2))}
    assert {spec.replication_factor for spec in specs.values()} == {3}
    assert {spec.topic_configs["min.insync.replicas"] for spec in specs.values()} == {"2"}
    assert {spec.topic_configs["max.message.bytes"] for spec in specs.values()} == {str(MAX_MESSAGE_BYTES)}
    for changelog in (topics.user_features_changelog, topics.item_stats_changelog, topics.catalog):
        assert specs[changelog].topic_configs["cleanup.policy"] == "compact"
        assert "retention.ms" not in specs[changelog].topic_configs
