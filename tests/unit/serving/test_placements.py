"""A placement's rule on a served index: its filters hold in every answer and
keep k, its boosts reorder, its promoted items take their slot."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.foundation.catalog import Removed
from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.rules import Boost, Rule
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.store import ModelStore
from streamrec.index.kinds import IndexSpec
from streamrec.serving.placements import RuleRows
from streamrec.serving.serving_index import ServingConfig, ServingIndex
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"{['red', 'blue', 'green'][n % 3]} lamp {n}", f"c{n % 3}", price=float(n)) for n in range(300)]
CATEGORY = {item.item_id: item.category for item in ITEMS}


@pytest.fixture(params=["flat", "hnsw"])
def serving(request, tmp_path) -> ServingIndex:
    version = publish_random_version(ModelStore(tmp_path), ITEMS)
    return ServingIndex(version, IndexSpec(request.param), ITEMS, ServingConfig())


def _user(clicks: list[str], purchases: list[str] = ()) -> UserFeatures:
    user = UserFeatures("u")
    for n, item_id in enumerate([*clicks, *purchases]):
        kind = "purchase" if n >= len(clicks) else "click"
        apply_event(user, Event(f"e{n}", kind, "u", item_id, 1000.0 + n), CATEGORY[item_id], FeatureConfig())
    return user


def _ids(answer) -> list[str]:
    return [s.item_id for s in answer]


def test_a_filtered_item_is_in_no_answer_of_any_kind_and_k_is_kept(serving):
    rule = Rule(include_categories=("c1", "c2"), exclude_items=("i1", "i4"), max_price=250)
    draw = random.Random(7)
    for _ in range(30):
        user = _user([f"i{draw.randrange(300)}" for _ in range(draw.randrange(0, 6))])
        answers = [
            serving.recommend(user, 40, now=2000.0, rule=rule),
            serving.recommend(user, 40, now=2000.0, diversity=0.5, rule=rule),
            serving.similar(f"i{draw.randrange(300)}", 40, rule),
            serving.bought_together(f"i{draw.randrange(300)}", 40, rule),
            serving.search("red lamp", 40, user, now=2000.0, rule=rule),
        ]
        for answer in answers:
            assert len(answer) == 40  # the filter is in the search, not after it
            for item_id in _ids(answer):
                item = ITEMS[int(item_id[1:])]
                assert rule.allows(item, 0.0), item
    assert len(serving.recommend(None, 40, rule=rule)) == 40


def test_a_rule_follows_the_catalog_an_item_priced_out_leaves_its_answers(serving):
    rule = Rule(max_price=100)
    first = _ids(serving.similar("i3", 10, rule))
    gone = ITEMS[int(first[0][1:])]
    serving.sync([Item(gone.item_id, gone.title, gone.category, price=500.0)])
    assert gone.item_id not in _ids(serving.similar("i3", 10, rule))
    assert serving.is_allowed(gone.item_id)  # still answered where no rule prices it out


def test_a_full_weight_boost_lifts_every_matching_candidate_first(serving):
    user = _user(["i1", "i2", "i3"])
    plain = serving.recommend(user, 20, now=2000.0)
    lifted = serving.recommend(user, 20, now=2000.0, rule=Rule(boosts=(Boost(category="c0", weight=1),)))
    categories = [CATEGORY[i] for i in _ids(lifted)]
    first_other = next((n for n, category in enumerate(categories) if category != "c0"), len(categories))
    assert first_other > 0 and all(category != "c0" for category in categories[first_other:])
    assert set(categories[:first_other]) == {"c0"} and _ids(plain) != _ids(lifted)


def test_promoted_items_take_their_slot_unless_out_of_stock_purchased_or_filtered(serving):
    user = _user(["i1", "i2"], purchases=["i9"])
    rule = Rule(promoted=("i5", "i9", "i7", "i8"), promoted_slot=2, exclude_items=("i8",))
    serving.sync([Item("i7", ITEMS[7].title, ITEMS[7].category, price=7.0, in_stock=False)])
    answer = serving.recommend(user, 10, now=2000.0, rule=rule)
    assert _ids(answer)[2] == "i5" and answer[2].source == "promoted" and len(answer) == 10
    assert not {"i7", "i8", "i9"} & set(_ids(answer))  # out of stock, filtered, purchased
    assert _ids(serving.similar("i5", 5, rule)).count("i5") == 0  # an item is never its own promotion
    cold = serving.recommend(None, 3, rule=Rule(promoted=("i299",), promoted_slot=50))
    assert _ids(cold)[-1] == "i299" and len(cold) == 3  # a slot past the answer is its end


def test_a_rules_rows_follow_catalog_changes_row_by_row_as_a_fresh_computation_would(serving):
    rule = Rule(exclude_categories=("c0",), max_price=200)
    serving.allowed(rule)  # computed once whole; from here on, from the touched rows
    draw = random.Random(5)
    for _ in range(40):
        item = serving.items.get(f"i{draw.randrange(300)}") or ITEMS[draw.randrange(300)]
        change = draw.choice(["stock", "price", "category", "remove"])
        if change == "remove":
            serving.sync([Removed(item.item_id)])
            continue
        price = draw.choice([50.0, 500.0]) if change == "price" else item.price
        category = draw.choice(["c0", "c1"]) if change == "category" else item.category
        in_stock = not item.in_stock if change == "stock" else item.in_stock
        serving.sync([Item(item.item_id, item.title, category, price=price, in_stock=in_stock)])
        fresh = RuleRows().allowed(rule, serving.allowed(None), serving.row_ids, serving.items)
        assert np.array_equal(serving.allowed(rule).bits, fresh.bits)
