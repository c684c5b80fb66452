"""User features and item statistics: pure folds of events."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.foundation.codec import decode, encode
from streamrec.foundation.features import (
    FeatureConfig,
    ItemStats,
    UserFeatures,
    apply_event,
    apply_item_counts,
    bucket_start,
    merge_item_stats,
    popular_items,
)
from streamrec.foundation.schema import Event

CONFIG = FeatureConfig(
    recent_items_max=5, purchased_items_max=3, categories_max=2, dedup_window=4, affinity_half_life_s=100.0
)


def event(n: int, ts: float, kind: str = "click", item: str | None = None) -> Event:
    return Event(f"e{n}", kind, "u1", item or f"i{n}", ts)


def test_duplicates_change_nothing():
    user = UserFeatures("u1")
    assert apply_event(user, event(1, 10.0), "books", CONFIG)
    before = user.to_wire()
    assert not apply_event(user, event(1, 10.0), "books", CONFIG)
    assert user.to_wire() == before


def test_recent_items_stay_in_time_order_and_bounded():
    user = UserFeatures("u1")
    for n, ts in enumerate([5.0, 1.0, 9.0, 3.0, 7.0, 8.0, 2.0]):
        apply_event(user, event(n, ts), None, CONFIG)
    assert user.recent_ts == sorted(user.recent_ts) and len(user.recent_ts) == 5
    assert user.recent_ts[-1] == 9.0 and user.clicks == 7
    assert (user.first_ts, user.last_ts) == (1.0, 9.0)


def test_purchases_are_remembered_once_and_bounded():
    user = UserFeatures("u1")
    for n, item in enumerate(["a", "b", "a", "c", "d"]):
        apply_event(user, event(n, float(n), "purchase", item), None, CONFIG)
    assert user.purchased == ["a", "c", "d"] and user.purchases == 5
    assert user.recent_types == "ppppp"
    assert user.purchase_counts == [2, 1, 1] and user.purchase_ts == [2.0, 3.0, 4.0]  # parallel, bounded together


def test_a_late_repurchase_keeps_the_newest_time():
    user = UserFeatures("u1")
    apply_event(user, event(1, 50.0, "purchase", "a"), None, CONFIG)
    apply_event(user, event(2, 10.0, "purchase", "a"), None, CONFIG)  # arrives late
    assert (user.purchased, user.purchase_counts, user.purchase_ts) == (["a"], [2], [50.0])


def test_a_row_stored_before_purchase_counts_reads_as_bought_once():
    user = UserFeatures("u1")
    for n, item in enumerate(["a", "b"]):
        apply_event(user, event(n, float(n), "purchase", item), None, CONFIG)
    old = {key: value for key, value in user.to_wire().items() if key not in ("pn", "pt")}
    read = UserFeatures.from_wire(old)
    assert read.purchased == ["a", "b"] and read.purchase_counts == [1, 1] and read.purchase_ts == [0.0, 0.0]


def test_affinity_equals_naive_exponential_decay():
    user = UserFeatures("u1")
    events = [(0.0, "books"), (50.0, "toys"), (30.0, "books"), (400.0, "books")]  # one late event
    for n, (ts, category) in enumerate(events):
        apply_event(user, event(n, ts), category, CONFIG)
    now = 500.0
    expected = {c: sum(math.exp2(-(now - ts) / 100.0) for ts, cat in events if cat == c) for c in ("books", "toys")}
    got = user.category_affinity(now, 100.0)
    assert got.keys() == expected.keys()
    for category in expected:
        assert math.isclose(got[category], expected[category], rel_tol=1e-9)


def test_affinity_stays_finite_over_long_gaps():
    user = UserFeatures("u1")
    for n in range(5):
        apply_event(user, event(n, n * 1e6), "books", CONFIG)  # 10,000 half-lives apart
    assert math.isclose(user.category_affinity(4e6, 100.0)["books"], 1.0)


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30), st.floats(0, 1e4), st.sampled_from(["click", "purchase"]), st.sampled_from("abcd")
        ),
        max_size=60,
    )
)
def test_every_list_is_bounded_and_wire_round_trips(events):
    user = UserFeatures("u1")
    for n, ts, kind, category in events:
        apply_event(user, Event(f"e{n}", kind, "u1", f"i{n % 7}", ts), category, CONFIG)
    assert len(user.recent_items) == len(user.recent_ts) == len(user.recent_types) <= CONFIG.recent_items_max
    assert len(user.purchased) <= CONFIG.purchased_items_max
    assert len(user.affinity) <= CONFIG.categories_max
    assert len(user.seen) <= 8 * CONFIG.dedup_window
    assert UserFeatures.from_wire(user.to_wire()) == user
    restored = UserFeatures.from_wire(decode(encode(user.to_wire())))  # what a worker restores from the changelog
    copied = user.copy()  # what the trainer's examples hold: the same, and independent of later events
    assert copied == restored == user
    apply_event(user, Event("later", "purchase", "u1", "i-later", 2e4), "z", CONFIG)
    assert copied == restored != user


def test_item_window_and_merge_over_partitions():
    config = FeatureConfig(popularity_bucket_s=10, popularity_buckets=3)
    parts = []
    for counts in ([(0.0, 1, 0), (15.0, 2, 1)], [(15.0, 1, 0), (45.0, 0, 2)]):
        stats = ItemStats("i1")
        for ts, clicks, purchases in counts:
            apply_item_counts(stats, bucket_start(ts, config), clicks, purchases, ts, config)
        parts.append(stats)
    merged = merge_item_stats(parts)
    assert (merged.clicks, merged.purchases, merged.last_ts) == (4, 3, 45.0)
    assert merged.window_counts(now=45.0, window_s=40) == (3, 3)  # buckets 10 and 40
    late = ItemStats("i2")
    for start in (100, 110, 120):
        apply_item_counts(late, start, 1, 0, start, config)
    apply_item_counts(late, 0, 5, 0, 0.0, config)  # older than the window: totals only
    assert late.bucket_starts == [100, 110, 120] and late.clicks == 8


def test_live_popularity_sums_partitions_weights_purchases_and_forgets_old_buckets():
    config = FeatureConfig(popularity_bucket_s=10, popularity_buckets=3, purchase_weight=3.0)
    a, b, old = ItemStats("a"), ItemStats("b"), ItemStats("old")
    apply_item_counts(a, 20, 2, 0, 25.0, config)
    a_elsewhere = ItemStats("a")
    apply_item_counts(a_elsewhere, 30, 1, 0, 35.0, config)  # the same item, counted on another partition
    apply_item_counts(b, 30, 0, 1, 31.0, config)
    apply_item_counts(old, 0, 50, 0, 1.0, config)  # outside the 30 s window before now=35
    assert popular_items([a, b, old, a_elsewhere], k=5, now=35.0, config=config) == [("a", 3.0), ("b", 3.0)]
    assert popular_items([b, a, a_elsewhere], k=1, now=35.0, config=config) == [("a", 3.0)]  # ties: by id


def test_affinity_far_ahead_of_now_stays_finite():
    user = UserFeatures("u1")
    apply_event(user, Event("e1", "click", "u1", "i1", 3 * 365 * 86_400.0), "c1", CONFIG)
    weights = user.category_affinity(now=0.0, half_life_s=CONFIG.affinity_half_life_s)
    assert all(math.isfinite(w) and w > 0 for w in weights.values())
