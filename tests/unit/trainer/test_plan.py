"""Warm refreshes: which runs continue from the current version, what they
learn from, and that they continue from the base's weights."""

from __future__ import annotations

import torch

from streamrec.embeddings.model import TwoTower
from streamrec.embeddings.versions import load_version
from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.examples import build_examples, newer_and_sampled
from streamrec.trainer.job import train_and_publish
from streamrec.trainer.plan import cut_short_current

CPU = torch.device("cpu")


def small_settings(tmp_path, **changes) -> Settings:
    values = dict(
        data_dir=tmp_path,
        model_dim=16,
        model_hidden=32,
        model_id_buckets=4096,
        model_text_buckets=4096,
        train_epochs=3,
        train_batch_size=256,
        train_random_negatives=64,
        model_neighbours=10,
        train_full_every=3,
        train_warm_epochs=1,
    )
    return Settings(**values | changes)


def test_warm_examples_are_the_new_events_and_a_sample_of_the_old():
    shop = Shop(ShopConfig(users=200, items=100, categories=4, seed=3, new_item_every=0))
    events, catalog = [r for r in shop.stream(6000) if isinstance(r, Event)], {i.item_id: i for i in shop.catalog()}
    since = sorted(e.ts for e in events)[-1000]
    full = build_examples(events, catalog, FeatureConfig())
    warm = build_examples(events, catalog, FeatureConfig(), teaches=newer_and_sampled(since, 1.0, 1000, 5000))
    new = sum(1 for t in full.train.times if t > since)
    assert sum(1 for t in warm.train.times if t > since) == new  # every new event teaches
    old = sum(1 for t in warm.train.times if t <= since)
    assert 0.7 * new < old < 1.3 * new  # about as many older ones, drawn
    # What is not taught still counts: popularity and the neighbours' histories are the full run's.
    assert warm.item_counts == full.item_counts and warm.histories == full.histories
    assert [s.to_wire() for s in warm.test.states] == [s.to_wire() for s in full.test.states]


def test_refreshes_alternate_warm_and_full_and_a_warm_one_continues_from_its_base(tmp_path):
    shop = Shop(ShopConfig(users=150, items=100, categories=4, seed=5, new_item_every=0))
    stream = [r for r in shop.stream(6000) if isinstance(r, Event)]
    cache = InteractionCache.open(tmp_path / "cache", max_events=100_000)
    settings, store = small_settings(tmp_path), ModelStore.in_data_dir(small_settings(tmp_path).data_dir)
    kinds = []
    for part in range(4):
        cache.append(
            stream[:3000] if part == 0 else stream[2000 + 1000 * part : 3000 + 1000 * part], shop.catalog(), {}
        )
        outcome = train_and_publish(TrainerConfig.from_settings(settings), cache, store, device=CPU, force=True)
        training = outcome.manifest.training
        kinds.append((training.kind, training.warm_in_a_row))
        if training.kind == "warm":
            window = outcome.manifest.data_window  # taught: the 1,000 new events and about as many older ones
            assert window.train_examples < 0.6 * window.events
            # Continued, not restarted: the weights moved a little from the base's, far less than a fresh start's.
            warm, base = (load_version(store, v, CPU) for v in (outcome.version, training.base))
            moved = (warm.model.user_mlp[0].weight - base.model.user_mlp[0].weight).abs().mean()
            fresh = (TwoTower(warm.config).user_mlp[0].weight - base.model.user_mlp[0].weight).abs().mean()
            assert moved < 0.2 * fresh
            blend = outcome.manifest.params.blend  # the base's choice stands: no new judging of weights
            assert blend.weight_from == base.version and blend.weight == base.blend_weight
    assert kinds == [("full", 0), ("warm", 1), ("warm", 2), ("full", 0)]  # every 3rd refresh is full


def _trained_then_more(tmp_path, trained: int) -> tuple[InteractionCache, ModelStore]:
    """A version on the first `trained` of 3,000 events; the rest arrived since."""
    shop = Shop(ShopConfig(users=100, items=80, categories=4, seed=7, new_item_every=0))
    stream = [r for r in shop.stream(3000) if isinstance(r, Event)]
    cache = InteractionCache.open(tmp_path / "cache", max_events=100_000)
    cache.append(stream[:trained], shop.catalog(), {})
    store = ModelStore.in_data_dir(small_settings(tmp_path).data_dir)
    train_and_publish(TrainerConfig.from_settings(small_settings(tmp_path)), cache, store, device=CPU, force=True)
    cache.append(stream[trained:], [], {})
    return cache, store


def test_a_changed_model_shape_or_asking_forces_a_full_refresh(tmp_path):
    cache, store = _trained_then_more(tmp_path, 2000)
    asked = train_and_publish(
        TrainerConfig.from_settings(small_settings(tmp_path)), cache, store, device=CPU, force=True, full=True
    )
    assert asked.manifest.training.kind == "full" and asked.manifest.training.why == "asked for"
    reshaped = train_and_publish(
        TrainerConfig.from_settings(small_settings(tmp_path, model_dim=8)), cache, store, device=CPU, force=True
    )
    assert reshaped.manifest.training.kind == "full" and "shape" in reshaped.manifest.training.why
    assert reshaped.manifest.model_config["dim"] == 8


def test_a_window_mostly_new_is_learned_by_a_full_refresh(tmp_path):
    cache, store = _trained_then_more(tmp_path, 1000)  # two thirds of the window arrived since
    training = train_and_publish(
        TrainerConfig.from_settings(small_settings(tmp_path)), cache, store, device=CPU, force=True
    ).manifest.training
    assert training.kind == "full" and "67% of the window is new" in training.why


def test_a_first_version_cut_short_by_its_budget_is_refined_once_from_its_weights(tmp_path):
    shop = Shop(ShopConfig(users=100, items=80, categories=4, seed=7, new_item_every=0))
    cache = InteractionCache.open(tmp_path / "cache", max_events=100_000)
    cache.append([r for r in shop.stream(3000) if isinstance(r, Event)], shop.catalog(), {})
    settings = TrainerConfig.from_settings(small_settings(tmp_path, train_first_budget_s=1e-6))
    store = ModelStore.in_data_dir(settings.data_dir)
    first = train_and_publish(settings, cache, store, device=CPU).manifest
    assert first.training.why == "first version" and first.training.cut_short and first.training.epochs == 1
    assert cut_short_current(store) == first.version
    refined = train_and_publish(settings, cache, store, device=CPU).manifest  # no new event: refined all the same
    assert refined.training.kind == "refine" and refined.training.base == first.version
    assert not refined.training.cut_short and refined.training.epochs > 1  # no budget now
    # The first version in a hurry tried one kind of neighbours; its refinement tries them all.
    assert set(first.params.blend.valid_recall_by_source) == {"ease(300)"}
    assert {"cosine", "rp3beta", "ease(100)", "ease(300)"} < set(refined.params.blend.valid_recall_by_source)
    assert refined.gate.against == first.version  # promoted only through the gate
    # Refined once: whether or not it passed, the next refresh is planned as usual.
    assert cut_short_current(store) is None
    assert train_and_publish(settings, cache, store, device=CPU).manifest.training.kind != "refine"


def test_a_budget_on_every_refresh_asks_for_no_refinement(tmp_path):
    shop = Shop(ShopConfig(users=100, items=80, categories=4, seed=7, new_item_every=0))
    cache = InteractionCache.open(tmp_path / "cache", max_events=100_000)
    cache.append([r for r in shop.stream(3000) if isinstance(r, Event)], shop.catalog(), {})
    settings = TrainerConfig.from_settings(small_settings(tmp_path, train_budget_s=1e-6, train_first_budget_s=0))
    store = ModelStore.in_data_dir(settings.data_dir)
    first = train_and_publish(settings, cache, store, device=CPU).manifest
    assert first.training.epochs == 1 and not first.training.cut_short and cut_short_current(store) is None
