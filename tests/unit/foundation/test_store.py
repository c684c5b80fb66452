"""Model versions on disk: atomic publishing, crash safety, promotion, rollback, pruning, the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

import streamrec.foundation.store as store_module
from streamrec.foundation.store import Blend, DataWindow, Gate, Manifest, ModelStore, Params, StoreError, Training

IDS = [f"i{n}" for n in range(10)]


def _publish(store: ModelStore, seed: int, promote: bool = True) -> str:
    rng = np.random.default_rng(seed)
    weights = {"tower.weight": rng.normal(size=(4, 3)).astype(np.float32), "ids": np.arange(5, dtype=np.int64)}
    vectors = rng.normal(size=(len(IDS), 3)).astype(np.float32)
    popularity = np.arange(len(IDS), dtype=np.float32)
    return store.publish(weights, IDS, vectors, popularity, Manifest(created=float(seed)), promote=promote)


def test_a_published_version_reads_back_as_written(tmp_path):
    store = ModelStore(tmp_path)
    version = _publish(store, 1)
    stored = store.load()
    assert stored.version == version == store.current() and stored.manifest.version == version
    assert stored.manifest.created == 1.0 and stored.item_ids == IDS
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(stored.weights["tower.weight"], rng.normal(size=(4, 3)).astype(np.float32))
    assert stored.weights["ids"].dtype == np.int64 and stored.item_popularity[-1] == 9.0


def test_the_manifest_round_trips_and_ignores_unknown_fields():
    manifest = Manifest(
        created=5.0,
        metrics={"test": {"recall@20": 0.5}},
        data_window=DataWindow(events=10, first_ts=1.0, last_ts=2.0, items=3, train_examples=4, test_examples=2),
        params=Params({"lr": 0.1}, {"dim": 8}, Blend(100, 0.2, {"0.2": 0.3}, "v1")),
        training=Training(kind="warm", why="from v1", base="v1", warm_in_a_row=2, history=[{"epoch": 0}]),
        gate=Gate(against="v1", current_recall=0.3, new_recall=0.31),
    )
    raw = manifest.to_json().replace(b'"created"', b'"from_the_future": 1, "created"')
    back = Manifest.from_json(raw)
    assert back == manifest and back.metric("test", "recall@20") == 0.5 and back.metric("valid", "recall@20") is None


def test_the_manifest_keeps_the_wire_names_of_its_records():
    written = json.loads(Manifest(created=1.0, params=Params(blend=Blend(valid_recall_by_weight={"0": 0.1}))).to_json())
    assert written["params"]["blend"]["valid_recall@20_by_weight"] == {"0": 0.1}
    assert written["gate"]["passed"] is True and written["training"]["kind"] == "full"


def test_a_manifest_without_the_trainers_records_reads_with_defaults():
    back = Manifest.from_json(json.dumps({"created": 1.0, "params": {}, "training": {}}))
    assert back.params.blend.weight == 0.0 and back.training.warm_in_a_row == 0 and back.gate.passed


@pytest.mark.parametrize("failing", ["save_file", "_fsync_write"])
def test_a_crash_while_publishing_leaves_the_previous_version_current(tmp_path, monkeypatch, failing):
    store = ModelStore(tmp_path)
    first = _publish(store, 1)
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
    assert store.load().manifest.created == 1.0  # readable, whole
    second = _publish(store, 3)  # the next publish clears the debris
    assert store.versions() == [first, second] and not list(tmp_path.glob(".tmp-*"))


def test_written_but_not_promoted_is_not_current(tmp_path):
    store = ModelStore(tmp_path)
    first = _publish(store, 1)
    second = _publish(store, 2, promote=False)
    assert store.current() == first and second in store.versions()


def test_rollback_walks_back_through_promoted_versions(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError):
        store.rollback()
    v1 = _publish(store, 1)
    _publish(store, 2, promote=False)  # never current: rollback skips it
    v3 = _publish(store, 3)
    v4 = _publish(store, 4)
    assert store.rollback() == v3 and store.current() == v3
    assert store.rollback() == v1
    with pytest.raises(StoreError):
        store.rollback()
    assert store.current() == v1 and v4 in store.versions()


def test_prune_keeps_the_newest_and_always_the_current(tmp_path):
    store = ModelStore(tmp_path)
    v1 = _publish(store, 1)
    later = [_publish(store, seed, promote=False) for seed in range(2, 6)]
    store.prune(keep=3)
    assert store.versions() == [v1, *later[-2:]]
    with pytest.raises(StoreError, match="no model version"):
        store.load(later[0])
