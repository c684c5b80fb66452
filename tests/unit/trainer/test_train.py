"""The training loop learns: a short run beats popularity on held-out users."""

from __future__ import annotations

import torch

from streamrec.embeddings.encoding import ModelConfig
from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Event
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.evaluate import judge_model, judge_popularity
from streamrec.trainer.examples import build_examples
from streamrec.trainer.train import TrainConfig, _past_budget, train


def test_short_training_beats_popularity_twice():
    shop = Shop(ShopConfig(users=300, items=300, categories=8, seed=1, new_item_every=0))
    events = [r for r in shop.stream(12_000) if isinstance(r, Event)]
    items = shop.catalog()
    split = build_examples(events, {i.item_id: i for i in items}, FeatureConfig())
    config = ModelConfig(
        dim=32, hidden=64, id_buckets=1 << 14, category_buckets=256, text_buckets=1 << 14, max_recent=20
    )
    result = train(
        split, items, config, TrainConfig(epochs=5, batch_size=256, random_negatives=128), torch.device("cpu"), 86_400.0
    )
    model = judge_model(result.model, split.test, items, config, torch.device("cpu"), 86_400.0)
    popularity = judge_popularity(split.test, items, split.item_counts)
    assert model.recall[20] >= 2 * popularity.recall[20], (model.recall, popularity.recall)
    assert model.ndcg[20] > popularity.ndcg[20]
    assert model.coverage > popularity.coverage
    assert result.valid.users == len(split.valid) > 30 and model.users == len(split.test) > 30


def test_no_epoch_starts_that_would_end_past_the_budget():
    assert not _past_budget(0.0, 1000.0, 1)  # no budget
    assert not _past_budget(60.0, 20.0, 2)  # two epochs in 20 s: a third ends at 30 s
    assert _past_budget(60.0, 41.0, 2)  # two in 41 s: a third would end at 61.5 s
    assert _past_budget(5.0, 4.0, 1)  # the first epoch ran; a second would not fit
