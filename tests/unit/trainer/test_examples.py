"""Training examples and held-out users: the worker's fold replayed, each
held-out user's newest events kept apart by the judging protocol."""

from __future__ import annotations

from collections import Counter, defaultdict

from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Event
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.examples import build_examples, holdout_role


def _log() -> tuple[list[Event], dict]:
    shop = Shop(ShopConfig(users=200, items=80, categories=3, seed=2, new_item_every=0))
    return [r for r in shop.stream(4000) if isinstance(r, Event)], {i.item_id: i for i in shop.catalog()}


def test_held_out_users_windows_teach_nothing_and_their_targets_are_new_items():
    events, catalog = _log()
    split = build_examples(events + events[:10], catalog, FeatureConfig())  # duplicates change nothing
    by_user = defaultdict(list)
    for event in sorted(events, key=lambda e: e.ts):
        by_user[event.user_id].append(event)
    for holdout, role in ((split.test, "test"), (split.valid, "valid")):
        assert len(holdout) > 20
        for state, targets, seen in zip(holdout.states, holdout.targets, holdout.seen, strict=True):
            assert holdout_role(state.user_id) == role
            history = by_user[state.user_id]
            cut = len(history) - max(1, round(0.2 * len(history)))
            assert seen == {e.item_id for e in history[:cut]}
            assert targets == {e.item_id for e in history[cut:]} - seen and targets
            assert state.last_ts == history[cut - 1].ts  # the state just before the window
    held = {u for u, history in by_user.items() if len(history) > 1 and holdout_role(u) != "train"}
    assert {s.user_id for s in split.test.states} | {s.user_id for s in split.valid.states} <= held
    window_events = sum(round(0.2 * len(by_user[u])) or 1 for u in held)
    first_events = len(by_user)
    assert len(split.train) == len(events) - window_events - first_events  # every other event teaches


def test_a_users_side_is_stable_and_about_a_fifth_each():
    roles = Counter(holdout_role(f"user-{n}") for n in range(10_000))
    assert 1800 < roles["test"] < 2200 and 1800 < roles["valid"] < 2200
    assert all(holdout_role(f"user-{n}") == holdout_role(f"user-{n}") for n in range(100))
