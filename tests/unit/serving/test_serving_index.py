"""The serving index over a published version: filters, live catalog changes,
cold start, similar items and search."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

from streamrec.embeddings.encoding import encode_items
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.embeddings.neighbours import Neighbours
from streamrec.embeddings.versions import load_version, publish_model
from streamrec.foundation.catalog import Removed
from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.store import Blend, Manifest, ModelStore, Params
from streamrec.index.kinds import IndexSpec
from streamrec.serving.serving_index import ServingConfig, ServingIndex
from streamrec.trainer.evaluate import encode_holdout, ranked_lists
from streamrec.trainer.examples import Holdout
from tests.versions import SMALL, publish_random_version

ITEMS = [
    Item(f"i{n}", f"{['red', 'blue', 'green'][n % 3]} lamp model {n}", f"c{n % 3}", price=10.0 + n) for n in range(300)
]


@pytest.fixture(params=["flat", "hnsw", "ivf_pq"])
def serving(request, tmp_path) -> ServingIndex:
    version = publish_random_version(ModelStore(tmp_path), ITEMS)
    return ServingIndex(version, IndexSpec(request.param), ITEMS, ServingConfig())


def _user(clicks: list[str], purchases: list[str] = ()) -> UserFeatures:
    user = UserFeatures("u")
    for n, item_id in enumerate([*clicks, *purchases]):
        kind = "purchase" if n >= len(clicks) else "click"
        apply_event(
            user,
            Event(f"e{n}", kind, "u", item_id, 1000.0 + n),
            item_id and ITEMS[int(item_id[1:])].category,
            FeatureConfig(),
        )
    return user


def test_purchased_and_out_of_stock_items_never_appear_and_k_is_kept(serving):
    user = _user(["i1", "i2"], purchases=["i3", "i4"])
    first = [s.item_id for s in serving.recommend(user, 20, now=2000.0)]
    gone = first[:5]
    serving.sync(
        [
            Item(i, ITEMS[int(i[1:])].title, ITEMS[int(i[1:])].category, price=ITEMS[int(i[1:])].price, in_stock=False)
            for i in gone
        ]
    )
    again = [s.item_id for s in serving.recommend(user, 20, now=2000.0)]
    assert len(again) == 20 and not set(again) & {"i3", "i4", *gone}
    similar = {s.item_id for s in serving.similar("i1", 50)}
    assert not similar & set(gone) and "i1" not in similar


def test_a_heavy_buyer_in_a_batch_leaves_the_others_search_as_deep_as_their_own(serving):
    light, heavy = _user(["i1", "i2"]), _user(["i5"], purchases=[f"i{n}" for n in range(100, 140)])
    depths = []
    search = serving.index.search
    serving.index.search = lambda queries, k, allow=None: depths.append((len(queries), k)) or search(queries, k, allow)
    together = serving.recommend_many([light, heavy, light], 10, now=2000.0)
    assert sorted(depths) == [(1, 10 + 64), (2, 10)]  # 40 purchases, rounded up to a power of two
    alone = [serving.recommend(user, 10, now=2000.0) for user in (light, heavy, light)]
    assert [[s.item_id for s in answer] for answer in together] == [[s.item_id for s in answer] for answer in alone]
    assert len(together[1]) == 10
    assert not {s.item_id for s in together[1]} & set(heavy.purchased)


def test_a_new_catalog_item_is_served_at_once_without_retraining(serving):
    new = Item("brand-new", "purple lamp deluxe", "c1", price=30.0)
    assert serving.sync([new]) == 1
    assert serving.is_allowed("brand-new") and serving.similar("brand-new", 5) is not None
    assert serving.search("purple", 3)[0].item_id == "brand-new"  # the only title holding "purple"


def test_a_changed_item_gets_a_new_row_and_the_old_one_is_off(serving):
    rows = serving.index.ntotal
    serving.sync([Item("i7", "violet lamp", "c1", price=5.0)])
    assert serving.index.ntotal == rows + 1 and serving.row_of["i7"] == rows
    assert [s.item_id for s in serving.search("violet", 5)][0] == "i7"
    assert sum(s.item_id == "i7" for s in serving.similar("i8", 300)) <= 1


def test_cold_start_is_popular_items_and_by_category_with_signal(serving):
    assert [s.item_id for s in serving.recommend(None, 3, now=2000.0)] == ["i0", "i1", "i2"]
    empty = UserFeatures("new")
    empty.affinity, empty.affinity_ts = {"c2": 1.0}, 1000.0  # a signal, no history
    answer = serving.cold_start(empty, 4, now=2000.0)
    assert all(ITEMS[int(s.item_id[1:])].category == "c2" for s in answer)


def test_exact_title_matches_come_first_with_or_without_a_user(serving):
    for user in (None, _user(["i5", "i6"])):
        answer = serving.search("green lamp", 10, user, now=2000.0)
        assert len(answer) == 10 and all("green" in ITEMS[int(s.item_id[1:])].title for s in answer)


def test_similar_of_an_unknown_item_is_none(serving):
    assert serving.similar("nope", 5) is None


def test_items_outside_the_catalog_are_never_answered(tmp_path):
    """The version learned 'ghost' from events alone; the catalog never had it."""
    ghost = Item("ghost", "red lamp model ghost", "c0", price=10.0)
    version = publish_random_version(ModelStore(tmp_path), [ghost, *ITEMS])  # the most popular, too
    serving = ServingIndex(version, IndexSpec("flat"), ITEMS, ServingConfig())
    answers = [
        serving.recommend(_user(["i1", "i2"]), 300, now=2000.0),
        serving.recommend(None, 300),
        serving.similar("i0", 300),
        serving.search("red lamp ghost", 300),
    ]
    assert all(answer and "ghost" not in {s.item_id for s in answer} for answer in answers)
    assert serving.similar("ghost", 5) is None and not serving.is_allowed("ghost")


def test_a_catalog_tombstone_switches_the_item_off_at_once(serving):
    user = _user(["i1", "i2"])
    first = serving.recommend(user, 5, now=2000.0)[0].item_id
    serving.sync([Removed(first), Removed("never-heard-of")])
    assert first not in {s.item_id for s in serving.recommend(user, 50, now=2000.0)}
    assert serving.similar(first, 5) is None and first not in {s.item_id for s in serving.recommend(None, 300)}
    serving.sync([ITEMS[int(first[1:])]])  # back in the catalog: served again
    assert serving.is_allowed(first)


def test_a_log_replayed_years_later_gets_the_same_answers(serving):
    """Serving runs on event time: a history from 1970 and the same history
    shifted to the last hour (an old log replayed today, a live shop) give the
    same recommendations, search and cold-start order."""
    shift = time.time() - 3000.0  # the last event a minute ago, by the wall clock
    then, now = UserFeatures("u"), UserFeatures("u")
    for n, item_id in enumerate(["i1", "i4", "i7", "i2"]):
        for user, offset in ((then, 0.0), (now, shift)):
            event = Event(f"e{n}", "click", "u", item_id, 1000.0 + 600.0 * n + offset)
            apply_event(user, event, ITEMS[int(item_id[1:])].category, FeatureConfig())
    for answer in (
        lambda user: serving.recommend(user, 10),
        lambda user: serving.search("lamp", 10, user),
        lambda user: serving.cold_start(user, 10),
    ):
        old, new = answer(then), answer(now)
        assert [s.item_id for s in old] == [s.item_id for s in new]
        assert [s.score for s in old] == pytest.approx([s.score for s in new], abs=1e-5)


def test_live_popularity_ranks_cold_start_and_training_counts_break_ties(serving):
    trained = [s.item_id for s in serving.cold_start(None, 5)]
    serving.set_popularity({})  # no live counts yet: nothing changes
    assert [s.item_id for s in serving.cold_start(None, 5)] == trained
    serving.set_popularity({"i250": 7.0, "i40": 2.0})
    assert [s.item_id for s in serving.cold_start(None, 5)] == ["i250", "i40", *trained[:3]]


def test_diversity_caps_each_category_and_zero_changes_nothing(serving):
    user = _user(["i0", "i3", "i6", "i9"])  # all of category c0

    def categories(answer) -> list[str]:
        return [ITEMS[int(s.item_id[1:])].category for s in answer]

    assert serving.recommend(user, 12, diversity=0.0) == serving.recommend(user, 12)  # the default is 0
    half = serving.recommend(user, 12, diversity=0.5)  # at most 6 of a category
    assert len({s.item_id for s in half}) == 12 and max(Counter(categories(half)).values()) <= 6
    assert max(Counter(categories(serving.recommend(user, 12, diversity=2 / 3))).values()) == 4
    # At most one per category: the three categories lead, capped items fill the rest in score order.
    full = serving.recommend(user, 12, diversity=1.0)
    assert len(full) == 12 and len(set(categories(full)[:3])) == 3


def test_explanations_name_a_recent_item_never_the_item_itself(serving):
    user = _user(["i0", "i1", "i2"])
    answer = serving.recommend(user, 10, explain=True)
    assert [s.item_id for s in answer] == [s.item_id for s in serving.recommend(user, 10)]
    assert all(s.because in {"i0", "i1", "i2", None} and s.because != s.item_id for s in answer)
    assert any(s.because for s in answer)
    assert (
        all("because" in s.to_wire() for s in answer if s.because)
        and "because" not in answer[0].__class__("x", 1.0).to_wire()
    )
    assert {s.source for s in answer} == {"towers"}  # a version without item neighbours
    cold = serving.recommend(None, 5, explain=True)  # no history: no reason to give
    assert all(s.because is None and s.source == "popularity" for s in cold)


def test_the_served_blend_ranks_as_the_trainer_judged_it(tmp_path):
    """What the gate and the manifest measure is what the API answers: the
    trainer's ranking of a held-out user and the index's answer agree."""
    torch.manual_seed(0)
    model = TwoTower(SMALL).eval()
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(len(ITEMS), size=8, replace=False)) for _ in range(200)]
    neighbours = Neighbours.from_histories(histories, len(ITEMS), k=20)
    manifest = Manifest(created=0.0, params=Params(blend=Blend(weight=0.5, recency_half_life=1.0)))
    store = ModelStore(tmp_path)
    version = load_version(store, publish_model(store, model, ITEMS, None, manifest, neighbours=neighbours))
    assert version.blend_weight == 0.5 and version.neighbours is not None
    serving = ServingIndex(version, IndexSpec("flat"), ITEMS, ServingConfig())
    user = _user(["i3", "i10", "i11", "i200"])
    served = [s.item_id for s in serving.recommend(user, 10)]

    holdout = Holdout([user], [{"i1"}], [set()])
    encoded = encode_holdout(holdout, ITEMS, SMALL, ServingConfig().affinity_half_life_s)
    catalog = to_tensors(encode_items(ITEMS, SMALL))
    mixes = ((0.0, 0.0), (0.5, 1.0), (0.5, 0.0))
    judged = ranked_lists(model, encoded, catalog, ITEMS, torch.device("cpu"), 10, neighbours, mixes)
    assert served == judged[(0.5, 1.0)]["0"] and served != judged[(0.0, 0.0)]["0"]
    assert served != judged[(0.5, 0.0)]["0"]  # the newest items' votes louder: another answer
    # Each item's source is the part of its blended score that leads: here both.
    sources = [s.source for s in serving.recommend(user, 10, explain=True)]
    assert set(sources) == {"towers", "neighbours"}
    serving.sync([Item(i.item_id, i.title, i.category, price=i.price, in_stock=False) for i in ITEMS])
    assert serving.recommend(user, 10) == []  # nothing in stock: an empty answer, not an error
