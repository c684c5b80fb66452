"""One trainer run without a broker: the version carries its neighbours and
blend weight, and the index the hook chose, before it is made current."""

from __future__ import annotations

import torch

from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.evaluate import BLEND_WEIGHTS, HALF_LIVES
from streamrec.trainer.job import train_and_publish


def test_a_run_records_the_hooks_index_and_the_blend_before_promoting(tmp_path):
    shop = Shop(ShopConfig(users=150, items=100, categories=4, seed=5, new_item_every=0))
    cache = InteractionCache.open(tmp_path / "cache", max_events=10_000)
    cache.append([r for r in shop.stream(4000) if isinstance(r, Event)], shop.catalog(), {})
    settings = Settings(
        data_dir=tmp_path,
        model_dim=16,
        model_hidden=32,
        model_id_buckets=4096,
        model_text_buckets=4096,
        train_epochs=2,
        train_batch_size=256,
        train_random_negatives=64,
        model_neighbours=20,
        tune_queries=20,
    )
    store = ModelStore.in_data_dir(settings.data_dir)
    asked = []

    def choose_index(version: str, users: list) -> dict:
        asked.append((version, len(users), store.current()))
        return {"kind": "hnsw", "hnsw_m": 16, "ef_search": 32}

    outcome = train_and_publish(
        TrainerConfig.from_settings(settings), cache, store, device=torch.device("cpu"), choose_index=choose_index
    )
    assert outcome.promoted and store.current() == outcome.version
    version, users, current_then = asked[0]
    assert version == outcome.version and 0 < users <= 40 and current_then is None  # chosen before promotion
    manifest = store.load_manifest(outcome.version)
    assert manifest.index == {"kind": "hnsw", "hnsw_m": 16, "ef_search": 32}
    blend = manifest.params.blend
    tried = {float(w) for w in blend.valid_recall_by_weight}
    assert blend.neighbours == 20 and blend.weight in tried and set(BLEND_WEIGHTS) < tried  # the grid, then finer
    assert {float(h) for h in blend.valid_recall_by_half_life} == set(HALF_LIVES)
    assert blend.valid_recall_by_half_life[str(blend.recency_half_life)] == max(
        blend.valid_recall_by_half_life.values()
    )
    by_source = blend.valid_recall_by_source
    every_kind = {"cosine", "rp3beta", "ease(100)", "ease(300)", "ease(1000)"}
    leader = max(every_kind, key=by_source.get)
    # Each kind, then, where EASE leads, the next-click transitions beside its lambda.
    transitions = {f"{leader}+transitions(0.5)"} if leader.startswith("ease") else set()
    assert set(by_source) == every_kind | transitions
    assert by_source[blend.source_name] == max(by_source.values())
    assert {"recall@20", "ndcg@20", "coverage@20", "diversity@20", "users"} <= set(manifest.metrics["test"])


def test_a_warm_refresh_keeps_its_bases_neighbours_and_weight(tmp_path):
    shop = Shop(ShopConfig(users=150, items=100, categories=4, seed=5, new_item_every=0))
    events = [r for r in shop.stream(4400) if isinstance(r, Event)]
    cache = InteractionCache.open(tmp_path / "cache", max_events=10_000)
    cache.append(events[:4000], shop.catalog(), {})
    settings = Settings(
        data_dir=tmp_path,
        model_dim=16,
        model_hidden=32,
        model_id_buckets=4096,
        model_text_buckets=4096,
        train_epochs=1,
        train_batch_size=256,
        train_random_negatives=64,
        model_neighbours=20,
    )
    store = ModelStore.in_data_dir(settings.data_dir)
    base = train_and_publish(
        TrainerConfig.from_settings(settings), cache, store, device=torch.device("cpu"), force=True
    )
    cache.append(events[4000:], [], {})
    warm = train_and_publish(
        TrainerConfig.from_settings(settings), cache, store, device=torch.device("cpu"), force=True
    )
    assert warm.manifest.training.kind == "warm"
    chosen, kept = base.manifest.params.blend, warm.manifest.params.blend
    assert kept.weight_from == base.version
    assert (kept.source, kept.regularisation, kept.weight) == (chosen.source, chosen.regularisation, chosen.weight)
