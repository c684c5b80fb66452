"""What a refresh learns from: the log's catalog, its neighbours and the tuner's users."""

from __future__ import annotations

from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Event, Item
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.data import (
    BASKET_GAP_S,
    baskets_of,
    bought_together_of,
    catalog_of,
    latest_states,
    neighbours_of,
    split_of,
)


def _log(tmp_path) -> InteractionCache:
    cache = InteractionCache.open(tmp_path / "cache", max_events=1000)
    events = [Event(f"e{n}", "click", f"u{n % 6}", f"i{(n * 5) % 9}", float(n)) for n in range(120)]
    cache.append(events, [Item("i0", "red mug", "kitchen"), Item("i1", "blue mug", "kitchen")], {})
    return cache


def test_items_seen_only_in_events_join_the_catalog_bare(tmp_path):
    items = {item.item_id: item for item in catalog_of(_log(tmp_path))}
    assert set(items) == {f"i{n}" for n in range(9)}
    assert items["i0"].title == "red mug" and items["i5"] == Item("i5", "", "")


def test_neighbours_are_learned_from_training_examples_only_and_none_are_asked_for_with_k_zero(tmp_path):
    cache = _log(tmp_path)
    items = catalog_of(cache)
    split = split_of(cache.events, items, FeatureConfig())
    neighbours = neighbours_of(split, items, k=3)
    assert neighbours is not None and neighbours.rows.shape == (len(items), 3)
    assert neighbours_of(split, items, k=0) is None


def test_the_tuners_users_are_each_users_newest_state_at_most_n(tmp_path):
    cache = _log(tmp_path)
    split = split_of(cache.events, catalog_of(cache), FeatureConfig())
    states = latest_states(split, 4)
    assert len(states) == 4 and len({s.user_id for s in states}) == 4
    everyone = {s.user_id: s for s in latest_states(split, 100)}
    for state in states:
        assert state.last_ts == everyone[state.user_id].last_ts  # the newest, not an older copy


def _bought(user: str, item: str, ts: float, session: str | None = None) -> Event:
    return Event(f"{user}-{item}-{ts}", "purchase", user, item, ts, session_id=session)


def test_a_basket_is_a_users_purchases_in_one_session_or_close_in_time():
    events = [
        _bought("u1", "mug", 0.0, "s1"),
        _bought("u1", "saucer", 5000.0, "s1"),  # the same session, however late
        _bought("u1", "pan", 10.0, "s2"),  # another session: a basket of one
        _bought("u2", "mug", 0.0),
        _bought("u2", "saucer", 60.0),
        _bought("u2", "pan", 60.0 + BASKET_GAP_S + 1),  # too long after: a basket of its own
        Event("c1", "click", "u2", "kettle", 61.0),  # clicks are no purchases
        _bought("u3", "mug", 0.0),
        _bought("u3", "mug", 1.0),  # the same item twice is no pair
    ]
    assert sorted(map(sorted, baskets_of(events))) == [["mug", "saucer"], ["mug", "saucer"]]


def test_items_bought_together_in_two_baskets_or_more_are_each_others_first():
    items = [Item(i, i, "kitchen") for i in ("mug", "saucer", "pan", "kettle")]
    events = [e for n in range(3) for e in (_bought(f"u{n}", "mug", 0.0), _bought(f"u{n}", "saucer", 1.0))]
    events += [_bought("u9", "mug", 0.0), _bought("u9", "pan", 1.0)]  # once: an accident
    together = bought_together_of(events, items)
    assert together is not None
    mug, saucer, pan = 0, 1, 2
    assert together.rows[mug][0] == saucer and together.rows[saucer][0] == mug
    assert pan not in together.rows[mug] and (together.rows[pan] == -1).all()
    assert bought_together_of(events[:1], items) is None  # no basket of two
