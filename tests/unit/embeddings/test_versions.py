"""A two-tower published into the store and loaded back serves the same vectors."""

from __future__ import annotations

import numpy as np
import torch

from streamrec.embeddings.encoding import ModelConfig, encode_items
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.embeddings.versions import load_version, publish_model
from streamrec.foundation.schema import Item
from streamrec.foundation.store import Manifest, ModelStore

CONFIG = ModelConfig(dim=8, hidden=16, id_buckets=256, category_buckets=32, text_buckets=256, max_recent=5)
ITEMS = [Item(f"i{n}", f"thing {n}", "c") for n in range(10)]


def test_a_published_model_loads_as_written(tmp_path):
    store = ModelStore(tmp_path)
    torch.manual_seed(1)
    model = TwoTower(CONFIG).eval()
    version = publish_model(store, model, ITEMS, None, Manifest(created=1.0))
    loaded = load_version(store)
    assert loaded.version == version == store.current() and loaded.config == CONFIG
    assert loaded.manifest.model_config == CONFIG.to_dict()
    batch = to_tensors(encode_items(ITEMS, CONFIG))
    with torch.no_grad():
        assert torch.equal(loaded.model.item_vectors(batch), model.item_vectors(batch))
        np.testing.assert_array_equal(loaded.item_vectors, model.item_vectors(batch).numpy())
    np.testing.assert_allclose(np.linalg.norm(loaded.item_vectors, axis=1), 1.0, rtol=1e-5)
    assert loaded.item_ids == [i.item_id for i in ITEMS] and not loaded.item_popularity.any()


def test_a_version_can_be_written_without_becoming_current(tmp_path):
    store = ModelStore(tmp_path)
    first = publish_model(store, TwoTower(CONFIG).eval(), ITEMS, None, Manifest(created=1.0))
    second = publish_model(store, TwoTower(CONFIG).eval(), ITEMS, None, Manifest(created=2.0), promote=False)
    assert store.current() == first and load_version(store, second).manifest.created == 2.0
