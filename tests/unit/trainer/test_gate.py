"""The quality gate's decision, and a worse refresh kept out of service."""

from __future__ import annotations

import pytest
import torch

from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.gate import decide_gate, promotes
from streamrec.trainer.job import train_and_publish


def test_the_first_version_always_passes():
    gate, reason = decide_gate(0.01, None, None, tolerance=0.0, force=False)
    assert gate.passed and not gate.forced and promotes(gate) and reason == "first version"


def test_a_version_passes_at_the_current_recall_minus_the_tolerance():
    gate, reason = decide_gate(0.29, "v1", 0.30, tolerance=0.01, force=False)
    assert gate.passed and gate.against == "v1" and "0.2900 vs current 0.3000" in reason


def test_a_worse_version_is_rejected_with_the_figures_that_decided_it():
    gate, reason = decide_gate(0.25, "v1", 0.30, tolerance=0.01, force=False)
    assert not gate.passed and not promotes(gate)
    assert reason == "kept v1: new recall@20 0.2500 < current 0.3000 (tolerance 0.01)"


def test_force_promotes_a_rejected_version_and_records_that_it_was_forced():
    gate, reason = decide_gate(0.25, "v1", 0.30, tolerance=0.0, force=True)
    assert not gate.passed and gate.forced and promotes(gate) and reason == "forced past the gate"
    passing, _ = decide_gate(0.35, "v1", 0.30, tolerance=0.0, force=True)
    assert passing.passed and not passing.forced  # nothing was forced


def test_a_refresh_worse_than_the_current_version_is_written_but_not_served(tmp_path):
    shop = Shop(ShopConfig(users=150, items=100, categories=4, seed=5, new_item_every=0))
    cache = InteractionCache.open(tmp_path / "cache", max_events=10_000)
    cache.append([r for r in shop.stream(4000) if isinstance(r, Event)], shop.catalog(), {})
    small = dict(
        data_dir=tmp_path,
        model_dim=16,
        model_hidden=32,
        model_id_buckets=4096,
        model_text_buckets=4096,
        train_batch_size=256,
        train_random_negatives=64,
        model_neighbours=0,
    )
    store, cpu = ModelStore.in_data_dir(Settings(**small).data_dir), torch.device("cpu")
    good = train_and_publish(TrainerConfig.from_settings(Settings(**small, train_epochs=4)), cache, store, device=cpu)
    # Barely moved from its random start: worse than the trained version on the same test users.
    bad = train_and_publish(
        TrainerConfig.from_settings(Settings(**small, train_epochs=1, train_lr=1e-7)),
        cache,
        store,
        device=cpu,
        full=True,
    )
    assert good.promoted and not bad.promoted and store.current() == good.version
    assert bad.version in store.versions() and bad.reason.startswith(f"kept {good.version}: new recall@20")
    gate = store.load_manifest(bad.version).gate
    assert not gate.passed and not gate.forced and gate.against == good.version
    assert gate.new_recall < gate.current_recall == pytest.approx(good.manifest.metric("test", "recall@20"), abs=1e-5)
