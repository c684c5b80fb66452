"""The agents' fold of a batch of records, on real tables and a catalog view, no broker."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from streamrec.foundation.attribution import MAX_ARMS_PER_PARTITION, Arm, ArmCounts
from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.codec import encode
from streamrec.foundation.features import FeatureConfig, ItemStats, UserFeatures
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Item, Limits
from streamrec.streams.agents import Agents, Outcome, Tables
from streamrec.streams.tables import ChangelogTable

GOOD = {"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": 7200.0}


@dataclass(frozen=True)
class Record:
    """The three fields of a consumer record the agents read."""

    key: bytes | None
    value: bytes | None
    offset: int


def _agents() -> Agents:
    users = ChangelogTable("user-features", "users-changelog", UserFeatures.from_wire, UserFeatures.to_wire)
    items = ChangelogTable("item-stats", "items-changelog", ItemStats.from_wire, ItemStats.to_wire)
    catalog = CatalogView("catalog", Limits())
    catalog.items["i1"] = Item("i1", "Red mug", "kitchen")
    arms = ChangelogTable("arm-counts", "arms-changelog", ArmCounts.from_wire, ArmCounts.to_wire)
    return Agents(Tables(users, items, arms), catalog, FeatureConfig(popularity_bucket_s=3600), Limits())


def _event(**change) -> dict:
    return {**GOOD, **change}


def test_events_fold_into_the_users_row_and_note_the_newest_event():
    agents, outcome = _agents(), Outcome()
    agents.touched = {}
    records = [Record(b"u1", encode(_event(event_id=f"e{n}", ts=7200.0 + n)), n) for n in range(3)]
    agents.on_events("clicks", 0, records, outcome)
    user = agents.users.get(0, "u1")
    assert (user.clicks, outcome.events, outcome.duplicates) == (3, 3, 0)
    assert list(user.affinity) == ["kitchen"]  # the category came from the catalog view
    assert agents.touched == {"u1": (0, "e2", 7202.0)}


def test_a_duplicate_event_id_changes_nothing_and_is_counted():
    agents, outcome = _agents(), Outcome()
    agents.on_events("clicks", 0, [Record(b"u1", encode(GOOD), 0), Record(b"u1", encode(GOOD), 1)], outcome)
    assert (agents.users.get(0, "u1").clicks, outcome.events, outcome.duplicates) == (1, 1, 1)


def test_an_event_keyed_otherwise_is_rerouted_by_its_user_not_folded():
    agents, outcome = _agents(), Outcome()
    agents.on_events("clicks", 2, [Record(b"someone-else", encode(GOOD), 0), Record(None, encode(GOOD), 1)], outcome)
    assert [(r.topic, r.key) for r in outcome.reroutes] == [("clicks", b"u1"), ("clicks", b"u1")]
    assert agents.users.get(2, "u1") is None and outcome.events == 0


def test_one_bad_element_of_a_batch_is_dead_lettered_and_the_rest_folded():
    agents, outcome = _agents(), Outcome()
    batch = encode([_event(event_id="a"), {"type": "click"}, _event(event_id="b")])
    agents.on_events("clicks", 1, [Record(b"u1", batch, 41), Record(b"u1", b"\xc1garbage", 42)], outcome)
    assert agents.users.get(1, "u1").clicks == 2
    element, undecodable = outcome.dead_letters
    assert (element.element, element.offset, element.partition) == (1, 41, 1)
    assert "missing required field 'event_id'" in element.reason
    assert (undecodable.element, undecodable.offset) == (None, 42) and "msgpack" in undecodable.reason
    assert dict(element.headers())["element"] == b"1"


def test_events_carrying_a_recommendation_id_are_counted_under_its_arm_once():
    agents, outcome = _agents(), Outcome()
    a, b = Arm("home", "spring", "a"), Arm("home", "spring", "b")
    events = [
        _event(event_id="c1", recommendation_id=a.new_id()),
        _event(event_id="c1", recommendation_id=a.new_id()),  # a duplicate: not counted again
        _event(event_id="c2", recommendation_id=b.new_id()),
        _event(event_id="p1", type="purchase", price=2.5, quantity=2, recommendation_id=b.new_id()),
        _event(event_id="p2", type="purchase", recommendation_id=b.new_id()),
        _event(event_id="c3"),  # no id: counted for the user, not for an arm
    ]
    agents.on_events("clicks", 0, [Record(b"u1", encode(event), n) for n, event in enumerate(events)], outcome)
    assert agents.arms.get(0, a.key) == ArmCounts(clicks=1)
    assert agents.arms.get(0, b.key) == ArmCounts(clicks=1, purchases=2, revenue=5.0)
    assert (outcome.events, outcome.duplicates, len(list(agents.arms.items()))) == (5, 1, 2)


def test_a_malformed_recommendation_id_is_dead_lettered_and_arms_beyond_the_bound_are_not_counted():
    agents, outcome = _agents(), Outcome()
    agents.on_events("clicks", 0, [Record(b"u1", encode(_event(recommendation_id="home~x")), 0)], outcome)
    (dead,) = outcome.dead_letters
    assert "recommendation_id" in dead.reason
    arms, _ = agents.arms.for_update(0)
    arms.update({f"p{n}~~": ArmCounts() for n in range(MAX_ARMS_PER_PARTITION)})
    agents.on_events("clicks", 0, [Record(b"u1", encode(_event(recommendation_id=Arm("new").new_id())), 1)], outcome)
    assert agents.arms.get(0, "new~~") is None and agents.users.get(0, "u1").clicks == 1


def test_item_counts_are_tallied_per_item_and_hour_bucket():
    agents, outcome = _agents(), Outcome()
    events = [
        _event(event_id="c1", ts=7200.0),
        _event(event_id="c2", ts=7300.0, user_id="u2"),
        _event(event_id="p1", ts=7400.0, type="purchase"),
        _event(event_id="c3", ts=11_000.0),  # the next hour
    ]
    agents.on_events("clicks", 0, [Record(e["user_id"].encode(), encode(e), n) for n, e in enumerate(events)], outcome)
    stats = agents.items.get(0, "i1")
    assert (stats.clicks, stats.purchases, stats.last_ts) == (3, 1, 11_000.0)
    assert (stats.bucket_starts, stats.bucket_clicks, stats.bucket_purchases) == ([7200, 10_800], [2, 1], [1, 0])


def test_catalog_items_are_validated_and_tombstones_pass():
    agents, outcome = _agents(), Outcome()
    records = [
        Record(b"i2", encode({"item_id": "i2", "title": "Blue mug", "category": "kitchen"}), 0),
        Record(b"i3", encode({"item_id": "i3"}), 1),
        Record(b"i1", None, 2),
    ]
    agents.on_catalog("catalog", 0, records, outcome)
    assert outcome.items == 1 and [d.offset for d in outcome.dead_letters] == [1]


def test_an_event_in_another_partition_than_its_users_is_rerouted():
    agents, outcome = _agents(), Outcome()
    agents.partitions = 8
    home = partition_for("u1", 8)
    elsewhere = (home + 1) % 8
    agents.on_events("clicks", elsewhere, [Record(b"u1", encode(GOOD), 0)], outcome)
    assert [(r.topic, r.key) for r in outcome.reroutes] == [("clicks", b"u1")]
    assert agents.users.get(elsewhere, "u1") is None
    agents.on_events("clicks", home, [Record(b"u1", encode(GOOD), 1)], Outcome())
    assert agents.users.get(home, "u1").clicks == 1


def test_a_record_whose_fold_fails_is_dead_lettered_and_the_partition_goes_on(monkeypatch):
    import streamrec.streams.agents

    real_apply = streamrec.streams.agents.apply_event

    def apply_event(user, event, category, config):
        if event.event_id == "boom":
            raise OverflowError("math range error")
        return real_apply(user, event, category, config)

    monkeypatch.setattr(streamrec.streams.agents, "apply_event", apply_event)
    agents, outcome = _agents(), Outcome()
    records = [Record(b"u1", encode(_event(event_id=n)), i) for i, n in enumerate(["a", "boom", "b"])]
    agents.on_events("clicks", 0, records, outcome)
    assert agents.users.get(0, "u1").clicks == 2 and outcome.events == 2
    (dead,) = outcome.dead_letters
    assert dead.offset == 1 and dead.reason == "could not be processed: OverflowError: math range error"


def _forget(user_id: str, **change) -> bytes:
    return encode({"type": "forget", "user_id": user_id, "ts": 1000.0, **change})


def test_a_forget_request_deletes_the_row_and_is_idempotent():
    agents, outcome = _agents(), Outcome()
    agents.touched = {}
    agents.on_events("clicks", 0, [Record(b"u1", encode(GOOD), 0)], outcome)
    _, dirty = agents.users.for_update(0)
    dirty.clear()  # as after a flush
    agents.on_control("control", 0, [Record(b"u1", _forget("u1"), 0), Record(b"u1", _forget("u1"), 1)], outcome)
    assert agents.users.get(0, "u1") is None and agents.touched == {}
    assert dirty == {"u1"}  # the next flush writes its tombstone
    assert outcome.forgotten == ["u1", "u1"]  # each answered with a recommendations tombstone


def test_a_bad_control_record_is_dead_lettered_and_a_misrouted_one_rerouted():
    agents, outcome = _agents(), Outcome()
    agents.partitions = 8
    wrong = next(p for p in range(8) if p != partition_for("u1", 8))
    bad = [Record(b"u1", _forget("u1", type="drop-all"), 0), Record(b"u1", encode({"type": "forget"}), 1)]
    agents.on_control("control", wrong, [*bad, Record(b"u1", _forget("u1"), 2)], outcome)
    assert [d.reason for d in outcome.dead_letters] == [
        "field 'type' must be 'forget', got 'drop-all'",
        "missing required field 'user_id'",
    ]
    assert [(r.topic, r.key) for r in outcome.reroutes] == [("control", b"u1")] and not outcome.forgotten


def test_with_pseudonymisation_rows_are_kept_under_the_pseudonym_in_the_raw_ids_partition():
    agents, outcome = _agents(), Outcome()
    agents.pseudonyms = pseudonyms = Pseudonyms(SecretStr("key"))
    agents.touched = {}
    agents.partitions = 8
    partition = partition_for("u1", 8)  # where the shop's producer put the event
    agents.on_events("clicks", partition, [Record(b"u1", encode(GOOD), 0)], outcome)
    stored = pseudonyms("u1")
    assert agents.users.get(partition, "u1") is None and agents.users.get(partition, stored).user_id == stored
    assert list(agents.touched) == [stored] and not outcome.reroutes
    # A forget carries the pseudonym; its partition is trusted (only the sender knew the raw id).
    agents.on_control("control", partition, [Record(stored.encode(), _forget(stored), 0)], outcome)
    assert agents.users.get(partition, stored) is None and not outcome.reroutes
