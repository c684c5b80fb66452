"""Model versions: atomic publishing, crash safety, gate-free promotion, rollback, pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainer.store as store_module
from embeddings.encoding import ModelConfig, encode_items
from embeddings.model import TwoTower, to_tensors
from streams.schema import Item
from trainer.store import ModelStore, StoreError

CONFIG = ModelConfig(dim=8, hidden=16, id_buckets=256, category_buckets=32, text_buckets=256, max_recent=5)
ITEMS = [Item(f"i{n}", f"thing {n}", "c") for n in range(10)]


def _publish(store: ModelStore, seed: int, promote: bool = True) -> tuple[str, TwoTower]:
    torch.manual_seed(seed)
    model = TwoTower(CONFIG).eval()
    with torch.no_grad():
        vectors = model.item_vectors(to_tensors(encode_items(ITEMS, CONFIG))).numpy()
    version = store.new_version_name()
    store.write(version, model, [i.item_id for i in ITEMS], vectors, {"seed": seed})
    if promote:
        store.promote(version)
    return version, model


def test_a_published_version_loads_as_written(tmp_path):
    store = ModelStore(tmp_path)
    version, model = _publish(store, 1)
    loaded = store.load()
    assert loaded.version == version == store.current()
    assert loaded.manifest["seed"] == 1 and loaded.config == CONFIG
    batch = to_tensors(encode_items(ITEMS, CONFIG))
    with torch.no_grad():
        assert torch.equal(loaded.model.item_vectors(batch), model.item_vectors(batch))
    np.testing.assert_allclose(np.linalg.norm(loaded.item_vectors, axis=1), 1.0, rtol=1e-5)
    assert loaded.item_ids == [i.item_id for i in ITEMS]


@pytest.mark.parametrize("failing", ["save_file", "_fsync_write"])
def test_a_crash_while_publishing_leaves_the_previous_version_current(tmp_path, monkeypatch, failing):
    store = ModelStore(tmp_path)
    first, _ = _publish(store, 1)
    real = getattr(store_module, failing)
    calls = {"n": 0}

    def crash_midway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 or failing == "save_file":  # after part of the version is on disk
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, failing, crash_midway)
    with pytest.raises(OSError):
        _publish(store, 2)
    monkeypatch.undo()
    assert store.current() == first and store.versions() == [first]
    assert store.load().manifest["seed"] == 1  # readable, whole
    second, _ = _publish(store, 3)  # the next publish clears the debris
    assert store.versions() == [first, second] and not list(tmp_path.glob(".tmp-*"))


def test_written_but_not_promoted_is_not_current(tmp_path):
    store = ModelStore(tmp_path)
    first, _ = _publish(store, 1)
    second, _ = _publish(store, 2, promote=False)
    assert store.current() == first and second in store.versions()


def test_rollback_walks_back_through_promoted_versions(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError):
        store.rollback()
    v1, _ = _publish(store, 1)
    _publish(store, 2, promote=False)  # never current: rollback skips it
    v3, _ = _publish(store, 3)
    v4, _ = _publish(store, 4)
    assert store.rollback() == v3 and store.current() == v3
    assert store.rollback() == v1
    with pytest.raises(StoreError):
        store.rollback()
    assert store.current() == v1 and v4 in store.versions()


def test_prune_keeps_the_newest_and_always_the_current(tmp_path):
    store = ModelStore(tmp_path)
    v1, _ = _publish(store, 1)
    later = [_publish(store, seed, promote=False)[0] for seed in range(2, 6)]
    store.prune(keep=3)
    assert store.versions() == [v1, *later[-2:]]
    with pytest.raises(StoreError, match="no model version"):
        store.load(later[0])
