"""Published model versions in the store's real format, for index and serving
tests: a random two-tower (instant) or a small trained one (seconds)."""

from __future__ import annotations

import time

import numpy as np
import torch

from streamrec.embeddings.encoding import ModelConfig
from streamrec.embeddings.model import TwoTower
from streamrec.embeddings.versions import ModelVersion, load_version, publish_model
from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.store import Manifest, ModelStore
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.examples import build_examples
from streamrec.trainer.train import TrainConfig, train

SMALL = ModelConfig(dim=16, hidden=32, id_buckets=4096, category_buckets=64, text_buckets=4096, max_recent=10)


def publish_random_version(
    store: ModelStore, items: list[Item], seed: int = 0, config: ModelConfig = SMALL
) -> ModelVersion:
    torch.manual_seed(seed)
    model = TwoTower(config).eval()
    popularity = np.arange(len(items), 0, -1, dtype=np.float32)  # the first items are the most popular
    return load_version(store, publish_model(store, model, items, popularity, Manifest(created=0.0)))


def publish_trained_version(
    store: ModelStore, shop_config: ShopConfig, events: int = 12_000, epochs: int = 8
) -> tuple[ModelVersion, list[Item]]:
    """A small two-tower really trained on simulated traffic, published and
    current: for tests that need recommendations to follow a user's taste."""
    shop = Shop(shop_config)
    log = [r for r in shop.stream(events) if isinstance(r, Event)]
    items = shop.catalog()
    split = build_examples(log, {i.item_id: i for i in items}, FeatureConfig())
    config = ModelConfig(
        dim=32, hidden=64, id_buckets=1 << 14, category_buckets=256, text_buckets=1 << 14, max_recent=20
    )
    result = train(
        split,
        items,
        config,
        TrainConfig(epochs=epochs, batch_size=256, random_negatives=128),
        torch.device("cpu"),
        86_400.0,
    )
    popularity = np.array([split.item_counts.get(i.item_id, 0.0) for i in items], dtype=np.float32)
    version = publish_model(store, result.model, items, popularity, Manifest(created=time.time()))
    return load_version(store, version), items
