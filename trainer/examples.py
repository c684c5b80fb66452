"""Training examples: "the user's state just before event t -> the item of event t".

User states are rebuilt by folding the events, in time order, with the very
`apply_event` the stream worker runs, so a training example sees exactly what
serving would have seen at that moment. The last `holdout` events of each user
are kept apart: the last for testing, the one before for validation (early
stopping), for users with at least three events (a per-user temporal split).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from foundation.codec import decode, encode
from foundation.features import FeatureConfig, UserFeatures, apply_event
from foundation.schema import Event, Item


@dataclass
class Examples:
    """Parallel lists: the state before, the item, its weight, the event time."""

    states: list[UserFeatures] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, state: UserFeatures, item: str, weight: float, ts: float) -> None:
        self.states.append(state)
        self.items.append(item)
        self.weights.append(weight)
        self.times.append(ts)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Split:
    train: Examples
    valid: Examples
    test: Examples
    item_counts: dict[str, float]  # training interactions per item (popularity, log-Q)


def _snapshot(user: UserFeatures) -> UserFeatures:
    """A frozen copy, through the changelog's encoding (as a worker restores it)."""
    return UserFeatures.from_wire(decode(encode(user.to_wire())))


def build_examples(
    events: list[Event], catalog: dict[str, Item], config: FeatureConfig, *, purchase_weight: float = 3.0
) -> Split:
    """Events in any order; duplicates (by event id) are dropped as the worker drops them."""
    events = sorted(events, key=lambda e: e.ts)
    per_user: dict[str, int] = defaultdict(int)
    for event in events:
        per_user[event.user_id] += 1
    seen: dict[str, int] = defaultdict(int)
    users: dict[str, UserFeatures] = {}
    split = Split(Examples(), Examples(), Examples(), defaultdict(float))
    for event in events:
        user = users.setdefault(event.user_id, UserFeatures(event.user_id))
        before = _snapshot(user) if user.recent_items else UserFeatures(event.user_id)
        item = catalog.get(event.item_id)
        if not apply_event(user, event, item.category if item else None, config):
            continue
        seen[event.user_id] += 1
        weight = purchase_weight if event.type == "purchase" else 1.0
        from_end = per_user[event.user_id] - seen[event.user_id]  # 0: the user's last event
        if per_user[event.user_id] >= 3 and from_end < 2:
            (split.test if from_end == 0 else split.valid).add(before, event.item_id, weight, event.ts)
        elif before.recent_items:  # a first event has no state to learn from
            split.train.add(before, event.item_id, weight, event.ts)
            split.item_counts[event.item_id] += 1.0
    return split
