"""A published model version made without training (a random two-tower), in the
store's real format, for index and serving tests."""

from __future__ import annotations

import numpy as np
import torch

from embeddings.encoding import ModelConfig, encode_items
from embeddings.model import TwoTower, to_tensors
from streams.schema import Item
from trainer.store import ModelStore, ModelVersion

SMALL = ModelConfig(dim=16, hidden=32, id_buckets=4096, category_buckets=64, text_buckets=4096, max_recent=10)


def publish_random_version(store: ModelStore, items: list[Item], seed: int = 0, config: ModelConfig = SMALL) -> ModelVersion:
    torch.manual_seed(seed)
    model = TwoTower(config).eval()
    with torch.no_grad():
        vectors = model.item_vectors(to_tensors(encode_items(items, config))).numpy()
    popularity = np.arange(len(items), 0, -1, dtype=np.float32)  # the first items are the most popular
    version = store.new_version_name()
    store.write(version, model, [i.item_id for i in items], vectors, {"model": "two-tower", "created": 0.0}, popularity)
    store.promote(version)
    return store.load(version)
