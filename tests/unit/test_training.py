"""A short training run on simulator data against the popularity baseline."""

from __future__ import annotations

import torch

from embeddings.encoding import ModelConfig
from streams.features import FeatureConfig
from streams.schema import Event
from streams.simulate import Shop, ShopConfig
from trainer.evaluate import evaluate_model, evaluate_popularity
from trainer.examples import build_examples
from trainer.train import TrainConfig, train


def test_examples_hold_out_each_users_last_two_events():
    shop = Shop(ShopConfig(users=50, items=60, categories=3, seed=2, new_item_every=0))
    events = [r for r in shop.stream(1500) if isinstance(r, Event)]
    split = build_examples(events + events[:10], {i.item_id: i for i in shop.catalog()}, FeatureConfig())
    assert len({s.user_id for s in split.test.states}) == len(split.test) == len(split.valid)
    last = {}
    for event in sorted(events, key=lambda e: e.ts):
        last[event.user_id] = event
    for state, item, ts in zip(split.test.states, split.test.items, split.test.times, strict=True):
        assert last[state.user_id].item_id == item and last[state.user_id].ts == ts
        assert all(t < ts for t in state.recent_ts)  # the state *before* the event
    assert len(split.train) + len(split.valid) + len(split.test) < len(events)  # first events teach nothing


def test_short_training_beats_popularity_twice():
    shop = Shop(ShopConfig(users=300, items=300, categories=8, seed=1, new_item_every=0))
    events = [r for r in shop.stream(12_000) if isinstance(r, Event)]
    items = shop.catalog()
    split = build_examples(events, {i.item_id: i for i in items}, FeatureConfig())
    config = ModelConfig(dim=32, hidden=64, id_buckets=1 << 14, category_buckets=256, text_buckets=1 << 14, max_recent=20)
    result = train(split, items, config, TrainConfig(epochs=5, batch_size=256, random_negatives=128), torch.device("cpu"), 86_400.0)
    model = evaluate_model(result.model, split.test, items, config, torch.device("cpu"), 86_400.0)
    popularity = evaluate_popularity(split.test, items, split.item_counts)
    assert model.recall[20] >= 2 * popularity.recall[20], (model.recall, popularity.recall)
    assert model.ndcg[20] > popularity.ndcg[20]
    assert model.coverage[20] > popularity.coverage[20]
