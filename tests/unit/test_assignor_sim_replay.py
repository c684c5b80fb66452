"""Assignment balance, simulator determinism and log replay parsing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.assignor import balanced_owners
from streams.replay import EventColumns, ItemColumns, ReplayError, parse_time, read_events, read_items
from streams.schema import Event, Item, Limits
from streams.simulate import Shop, ShopConfig


@given(st.integers(1, 64), st.dictionaries(st.text("abc", min_size=1, max_size=3), st.lists(st.integers(0, 70), max_size=10), min_size=1, max_size=8))
def test_every_partition_has_one_owner_and_load_is_balanced(n, held):
    owners = balanced_owners(list(range(n)), held)
    assert sorted(owners) == list(range(n))
    loads = [sum(1 for o in owners.values() if o == m) for m in held]
    assert max(loads) - min(loads) <= 1


def test_partitions_stay_with_their_owner_when_a_member_joins():
    before = balanced_owners(list(range(8)), {"a": [], "b": []})
    held = {m: [p for p, o in before.items() if o == m] for m in ("a", "b")}
    after = balanced_owners(list(range(8)), {**held, "c": []})
    moved = [p for p in range(8) if before[p] != after[p]]
    assert len(moved) == 2  # only what the newcomer needs (8 // 3 rounded down)


def test_simulator_is_deterministic_and_planted():
    config = ShopConfig(users=200, items=300, categories=5, seed=3, new_item_every=100)
    first = list(Shop(config).stream(3000))
    assert first == list(Shop(config).stream(3000))
    events = [r for r in first if isinstance(r, Event)]
    new_items = [r for r in first if isinstance(r, Item)]
    assert len(events) == 3000 and len(new_items) == 30
    assert len({e.event_id for e in events}) == 3000
    purchases = sum(e.type == "purchase" for e in events)
    assert 0.02 < purchases / len(events) < 0.2
    assert any(e.query for e in events)
    shop = Shop(config)
    truth_categories = {i.item_id: i.category for i in shop.catalog()}
    list(shop.stream(3000))
    truth = shop.ground_truth()
    assert all(truth["items"][i]["category"] == c for i, c in truth_categories.items())
    # Sessions stay in one category: consecutive clicks of a session share it.
    category = {**truth_categories, **{i.item_id: i.category for i in new_items}}
    same = [category[a.item_id] == category[b.item_id] for a, b in itertools.pairwise(events) if a.session_id == b.session_id]
    assert sum(same) / len(same) > 0.99


def test_parse_time_accepts_seconds_milliseconds_and_iso():
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time("1700000000000") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0


def test_replay_reads_ratings_as_purchases_in_time_order(tmp_path):
    log = tmp_path / "ratings.csv"
    log.write_text("userId,movieId,rating,timestamp\n1,10,4.5,300\n1,11,2.0,100\n2,10,5.0,200\n")
    events = read_events(log, EventColumns("userId", "movieId", "timestamp", rating="rating", purchase_threshold=4.0), Limits())
    assert [(e.user_id, e.item_id, e.type, e.ts) for e in events] == [
        ("1", "11", "click", 100.0), ("2", "10", "purchase", 200.0), ("1", "10", "purchase", 300.0),
    ]  # fmt: skip
    again = read_events(log, EventColumns("userId", "movieId", "timestamp", rating="rating", purchase_threshold=4.0), Limits())
    assert [e.event_id for e in again] == [e.event_id for e in events]  # replaying twice is absorbed


def test_replay_items_take_the_first_genre_as_category(tmp_path):
    items = tmp_path / "movies.csv"
    items.write_text('movieId,title,genres\n10,"Heat (1995)",Action|Crime|Thriller\n11,Up,Animation\n')
    parsed = read_items(items, ItemColumns("movieId", "title", "genres"), Limits())
    assert parsed[0].category == "Action" and parsed[0].attributes == {"genres": "Action|Crime|Thriller"}
    assert parsed[1].category == "Animation" and parsed[1].attributes == {}


def test_replay_errors_name_file_line_and_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,when\nu1,i1,yesterday\n")
    with pytest.raises(ReplayError, match="no column 'timestamp'"):
        read_events(log, EventColumns("user", "item"), Limits())
    with pytest.raises(ReplayError, match=r"log.csv:2: .*yesterday"):
        read_events(log, EventColumns("user", "item", "when"), Limits())
    with pytest.raises(ReplayError, match="--purchase-threshold"):
        read_events(log, EventColumns("user", "item", "when", rating="r"), Limits())
