"""The simulated shop: deterministic for a seed, with the structure it claims to plant."""

from __future__ import annotations

import itertools

from streamrec.foundation.schema import Event, Item
from streamrec.shop.simulate import Shop, ShopConfig


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
    same = [
        category[a.item_id] == category[b.item_id]
        for a, b in itertools.pairwise(events)
        if a.session_id == b.session_id
    ]
    assert sum(same) / len(same) > 0.99


def test_shoppers_click_more_on_answers_that_match_their_taste_and_ignore_strangers():
    shop = Shop(ShopConfig(users=50, items=400, seed=3))
    truth = shop.ground_truth()

    def clicks(user: str, liked: bool) -> int:
        taste = truth["users"][user]["taste"]
        shown = sorted(truth["items"], key=lambda item: taste.get(truth["items"][item]["category"], 0.0))
        shown = shown[-5:] if liked else shown[:5]
        return sum(shop.react(user, shown)[0] is not None for _ in range(400))

    users = [f"u{n}" for n in range(10)]
    liked, disliked = sum(clicks(u, True) for u in users), sum(clicks(u, False) for u in users)
    assert liked > 3 * max(disliked, 1)
    assert shop.react("stranger", ["i1"]) == (None, False) and shop.react("u1", ["no-such-item"]) == (None, False)
