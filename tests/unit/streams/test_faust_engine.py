"""The faust engine's wiring, without a broker: what `mount` adds to an app,
and the rows its restores fill."""

from __future__ import annotations

from types import SimpleNamespace

import faust
import pytest

from streamrec.foundation.codec import encode
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics
from streamrec.streams.faust_engine import mount
from streamrec.streams.tables import ChangelogTable


def app(**options) -> faust.App:
    return faust.App("mount-test", broker="kafka://127.0.0.1:9", autodiscover=False, **options)


def test_mount_adds_an_agent_per_input_topic_and_a_table_on_each_of_the_batch_engines_changelogs():
    settings = Settings(topic_prefix="m.")
    topics = Topics.from_settings(settings.kafka)
    target = app(table_standby_replicas=0)
    agents = mount(target, settings)
    assert sorted(agent.name for agent in target.agents.values()) == sorted(
        f"streamrec.{topic}" for topic in (*topics.events, topics.control, topics.catalog)
    )
    changelogs = {table.changelog_topic.get_topic_name() for table in target.tables.values()}
    assert changelogs == set(topics.changelogs)
    assert agents.users.changelog == topics.user_features_changelog


def test_mount_refuses_standby_replicas():
    with pytest.raises(ValueError, match="table_standby_replicas=0"):
        mount(app(table_standby_replicas=1), Settings())


def test_a_restore_fills_rows_by_partition_and_a_tombstone_deletes():
    settings = Settings(topic_prefix="r.")
    target = app(table_standby_replicas=0)
    agents = mount(target, settings)
    store = target.tables[agents.users.name].data

    def record(partition: int, key: str, user: UserFeatures | None):
        value = None if user is None else encode(user.to_wire())
        return SimpleNamespace(message=SimpleNamespace(partition=partition, key=key.encode(), value=value))

    store.apply_changelog_batch(
        [
            record(0, "u1", UserFeatures("u1", clicks=2)),
            record(1, "u1", UserFeatures("u1", clicks=5)),
            record(1, "u2", UserFeatures("u2")),
            record(1, "u2", None),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )
    assert (agents.users.get(0, "u1").clicks, agents.users.get(1, "u1").clicks) == (2, 5)
    assert agents.users.get(1, "u2") is None


def test_hold_keeps_exactly_the_given_partitions():
    table = ChangelogTable("t", "t-changelog", UserFeatures.from_wire, UserFeatures.to_wire)
    table.load(0, b"a", encode(UserFeatures("a").to_wire()))
    table.load(2, b"b", encode(UserFeatures("b").to_wire()))
    table.hold({2, 3})
    assert table.partitions == {2, 3}
    assert table.get(2, "b") is not None and table.get(3, "b") is None
