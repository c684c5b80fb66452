"""Model-free answers: live popularity, the user's own categories first."""

from __future__ import annotations

from streamrec.foundation.features import UserFeatures
from streamrec.foundation.popular import LivePopularity, pick_popular
from streamrec.foundation.schema import Item


def _user(**fields) -> UserFeatures:
    return UserFeatures("u1", last_ts=100.0, affinity_ts=100.0, **fields)


def test_the_users_categories_come_first_then_the_rest_by_popularity():
    ranked = [("a", "mugs", 1.0), ("b", "pans", 0.8), ("c", "mugs", 0.5), ("d", "pans", 0.2)]
    picked = pick_popular(lambda: iter(ranked), {"pans"}, set(), 3)
    assert [s.item_id for s in picked] == ["b", "d", "a"]
    assert [s.item_id for s in pick_popular(lambda: iter(ranked), set(), {"a"}, 2)] == ["b", "c"]


def test_live_popularity_skips_what_is_out_of_stock_or_bought_and_scores_relative_to_the_top():
    catalog = {
        "mug": Item("mug", "Mug", "kitchen"),
        "pan": Item("pan", "Pan", "kitchen"),
        "gone": Item("gone", "Gone", "kitchen", in_stock=False),
    }
    live = LivePopularity(lambda: {"mug": 2.0, "pan": 4.0, "gone": 9.0, "bare": 1.0}, catalog, 3600.0, False)
    answer = live.recommend(_user(purchased=["pan"], affinity={"kitchen": 1.0}), 5)
    assert [(s.item_id, s.score) for s in answer] == [("mug", 0.5), ("bare", 0.25)]
    assert [s.item_id for s in live.recommend(None, 1)] == ["pan"]


def test_recent_clicks_are_left_out_only_when_asked():
    scores = {"mug": 2.0, "pan": 1.0}
    clicked = _user(recent_items=["mug"], recent_ts=[99.0], recent_types="c")
    assert [s.item_id for s in LivePopularity(lambda: scores, {}, 3600.0, True).recommend(clicked, 5)] == ["pan"]
    assert len(LivePopularity(lambda: scores, {}, 3600.0, False).recommend(clicked, 5)) == 2
