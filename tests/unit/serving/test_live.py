"""The live model: each version's index built (and tuned, when asked) before it is served."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from streamrec.foundation.codec import encode
from streamrec.foundation.features import FeatureConfig, ItemStats, UserFeatures, apply_event, apply_item_counts
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore, StoreError
from streamrec.serving.live import ItemStatsReplica, LiveConfig, LiveModel
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"item {n}", f"c{n % 5}") for n in range(400)]


def _users(n: int) -> list[UserFeatures]:
    users = []
    for u in range(n):
        user = UserFeatures(f"u{u}")
        for e in range(3):
            item = ITEMS[(u * 7 + e) % len(ITEMS)]
            apply_event(
                user,
                Event(f"e{u}-{e}", "click", user.user_id, item.item_id, 1000.0 + e),
                item.category,
                FeatureConfig(),
            )
        users.append(user)
    return users


def test_the_server_tunes_each_version_on_its_users_when_asked(tmp_path):
    settings = Settings(
        data_dir=tmp_path, index_kind="flat", index_tune=True, tune_recall=0.99, tune_queries=60, tune_prefer="memory"
    )
    publish_random_version(ModelStore(tmp_path / "models"), ITEMS)
    live = LiveModel(LiveConfig.from_settings(settings), sample_users=lambda n: _users(80))
    live.catalog.items.update({item.item_id: item for item in ITEMS})
    assert asyncio.run(live.swap_to(live.store.current()))
    served = live.current
    # fp16 (128 B/item) alone has recall ~1: something smaller than the configured flat index is chosen.
    assert served.index.spec.kind != "flat" and served.index.bytes_per_item() < 256
    assert served.index.ntotal == len(ITEMS)


def _announce(live: LiveModel, version: object) -> None:
    live.announcements.apply(b"two-tower", encode({"model": "two-tower", "version": version}))


def test_announcements_can_only_point_at_the_stores_current_version(tmp_path):
    store = ModelStore(tmp_path / "models")
    older = publish_random_version(store, ITEMS[:50], seed=1).version
    current = publish_random_version(store, ITEMS[:50], seed=2).version
    live = LiveModel(LiveConfig.from_settings(Settings(data_dir=tmp_path)))
    for hostile in ("", "../models", "/etc", "..", 7, None, "x" * 10_000, current + "/../.."):
        _announce(live, hostile)
        assert live.announcements.latest is None, hostile
    live.announcements.apply(b"two-tower", b"\xc1 not msgpack")
    _announce(live, older)  # well formed and stored, but no longer current: ignored
    assert live.version_to_serve(now=0.0) is None and live.announcements.latest is None
    _announce(live, current)
    assert live.version_to_serve(now=0.0) == current


def test_a_version_that_fails_to_load_is_retried_with_backoff_not_in_a_loop(tmp_path):
    store = ModelStore(tmp_path / "models")
    version = publish_random_version(store, ITEMS[:50]).version
    (store.root / version / "model.safetensors").write_bytes(b"truncated")
    live = LiveModel(LiveConfig.from_settings(Settings(data_dir=tmp_path)))
    _announce(live, version)
    assert not asyncio.run(live.swap_to(version))
    now = time.monotonic()
    assert live.version_to_serve(now) is None  # within the backoff
    assert live.version_to_serve(now + 6.0) == version
    assert not asyncio.run(live.swap_to(version))
    assert live.version_to_serve(now + 6.0) is None and live.version_to_serve(now + 16.0) == version  # doubled


def test_the_store_refuses_version_names_that_are_paths(tmp_path):
    store = ModelStore(tmp_path / "models")
    for name in ("../x", "/etc/passwd", ".."):
        with pytest.raises(StoreError, match="not a model version name"):
            store.load(name)


def test_the_item_stats_replica_sums_partitions_in_event_time():
    replica = ItemStatsReplica("item-stats", FeatureConfig(popularity_bucket_s=10, popularity_buckets=3))

    def row(partition: int, item_id: str, start: int, clicks: int) -> SimpleNamespace:
        stats = ItemStats(item_id)
        apply_item_counts(stats, start, clicks, 0, start + 1.0, replica.config)
        return SimpleNamespace(partition=partition, key=item_id.encode(), value=encode(stats.to_wire()))

    for record in (row(0, "a", 100, 2), row(1, "a", 100, 3), row(1, "b", 100, 4), row(0, "old", 0, 50)):
        replica.apply_record(record)
    replica.apply_record(SimpleNamespace(partition=2, key=b"c", value=b"\xc1 garbage"))  # ignored
    assert replica.popularity() == {"a": 5.0, "b": 4.0}  # 'old' is outside the 30 s before the newest event
    replica.apply_record(SimpleNamespace(partition=1, key=b"b", value=None))  # a partition's row deleted
    assert replica.popularity() == {"a": 5.0}


def test_a_version_whose_manifest_holds_an_index_is_built_so_without_measuring(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path, index_kind="flat", index_tune=True)
    store = ModelStore(tmp_path / "models")
    version = publish_random_version(store, ITEMS).version
    store.record_index(version, {"kind": "ivf_flat", "nlist": 8, "nprobe": 4})

    def measured(*args, **kwargs):
        raise AssertionError("a version with the trainer's choice must not be tuned again")

    monkeypatch.setattr("streamrec.serving.live.best_spec", measured)
    live = LiveModel(LiveConfig.from_settings(settings), sample_users=lambda n: measured())
    live.catalog.items.update({item.item_id: item for item in ITEMS})
    assert asyncio.run(live.swap_to(version))
    spec = live.current.index.spec
    assert (spec.kind, spec.nlist, spec.nprobe) == ("ivf_flat", 8, 4) and live.current.index.ntotal == len(ITEMS)


def test_the_trainers_hook_tunes_a_version_into_its_manifest(tmp_path):
    from streamrec.index.tune import choose_for_version

    settings = Settings(data_dir=tmp_path, tune_recall=0.99, tune_queries=60, tune_prefer="memory")
    store = ModelStore(tmp_path / "models")
    version = publish_random_version(store, ITEMS).version
    chosen = choose_for_version(store, settings.tune, version, _users(80))
    assert chosen is not None and chosen["kind"] != "flat"  # smaller than flat at recall 0.99
    store.record_index(version, chosen)
    assert store.load_manifest(version).index == chosen and store.current() == version
