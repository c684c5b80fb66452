"""The live model: each version's index built (and tuned, when asked) before it is served."""

from __future__ import annotations

import asyncio

from foundation.features import FeatureConfig, UserFeatures, apply_event
from foundation.schema import Event, Item
from foundation.settings import Settings
from foundation.store import ModelStore
from index.live import LiveModel
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
    live = LiveModel(settings, sample_users=lambda n: _users(80))
    live.catalog.items.update({item.item_id: item for item in ITEMS})
    assert asyncio.run(live.swap_to(live.store.current()))
    served = live.current
    # fp16 (128 B/item) alone has recall ~1: something smaller than the configured flat index is chosen.
    assert served.index.spec.kind != "flat" and served.index.bytes_per_item() < 256
    assert served.index.ntotal == len(ITEMS)
