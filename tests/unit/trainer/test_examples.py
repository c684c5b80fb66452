"""Training examples: the worker's fold replayed, each user's last two events held out."""

from __future__ import annotations

from foundation.features import FeatureConfig
from foundation.schema import Event
from streamrec.shop.simulate import Shop, ShopConfig
from trainer.examples import build_examples


def test_examples_hold_out_each_users_last_two_events():
    shop = Shop(ShopConfig(users=50, items=60, categories=3, seed=2, new_item_every=0))
    events = [r for r in shop.stream(1500) if isinstance(r, Event)]
    split = build_examples(events + events[:10], {i.item_id: i for i in shop.catalog()}, FeatureConfig())
    assert len({s.user_id for s in split.test.states}) == len(split.test) == len(split.valid)
    last = {}
    for event in sorted(events, key=lambda e: e.ts):
        last[event.user_id] = event
    for state, item, ts in zip(split.test.states, split.test.items, split.test.times, strict=True):
        assert last[state.user_id].item_id == item and last[state.user_id].ts == ts
        assert all(t < ts for t in state.recent_ts)  # the state *before* the event
    assert len(split.train) + len(split.valid) + len(split.test) < len(events)  # first events teach nothing
