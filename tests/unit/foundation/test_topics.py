"""Topic specs: co-partitioning and the retention of personal data."""

from __future__ import annotations

from foundation.settings import Settings
from foundation.topics import Topics, topic_specs


def test_topics_with_personal_data_get_the_configured_retention():
    settings = Settings(events_retention_hours=24, deadletter_retention_hours=1, partitions=6)
    topics = Topics.from_settings(settings)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    day, hour = str(24 * 3_600_000), str(3_600_000)
    for name in (*topics.events, topics.control, topics.recommendations):
        assert specs[name].topic_configs["retention.ms"] == day, name
    assert specs[topics.deadletter].topic_configs == {"retention.ms": hour}
    assert specs[topics.recommendations].topic_configs["cleanup.policy"] == "compact,delete"  # tombstones erase
    assert {specs[n].num_partitions for n in (*topics.events, topics.control, topics.user_features_changelog)} == {6}


def test_zero_hours_leaves_retention_to_the_broker():
    specs = topic_specs(Settings(events_retention_hours=0, deadletter_retention_hours=0))
    assert all("retention.ms" not in spec.topic_configs for spec in specs)
