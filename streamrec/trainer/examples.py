"""Training examples and the held-out users, by the judging protocol.

An example is "the user's state just before event t -> the item of event t".
User states are rebuilt by folding the events, in time order, with the very
`apply_event` the stream worker runs, so a training example sees exactly what
serving would have seen at that moment.

What is held out follows `streamrec.trainer.eval_protocol`, the way `streamrec bench
quality` judges the product: for a share of the users (picked by a stable
hash of their id, so a user stays on the same side from refresh to refresh)
the newest `WINDOW_FRACTION` of their events is a window; the model learns
nothing from it and is judged on ranking its new items from the state before
it. Half of those users validate (early stopping), half test (the gate and
the manifest). Every other user's events all teach.

A warm refresh (`streamrec.trainer.job`) learns from the new events and a sample of
the older ones only: `teaches` picks them. Every event is still folded
(cheap), and counted in the item popularity and the users' histories that
the item neighbours come from; only the picked ones are copied into examples.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.schema import Event, Item
from streamrec.trainer.eval_protocol import WINDOW_FRACTION

HOLDOUT_SHARE = 0.2  # of the users, for each of validation and test
MAX_HOLDOUT_USERS = 20_000  # for each: enough to be stable, bounded in evaluation time


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
class Holdout:
    """Held-out users: the state before each one's window, the new items in
    it (targets) and the items before it (excluded from the ranking)."""

    states: list[UserFeatures] = field(default_factory=list)
    targets: list[set[str]] = field(default_factory=list)
    seen: list[set[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.states)


@dataclass
class Split:
    train: Examples
    valid: Holdout
    test: Holdout
    item_counts: dict[str, float]  # training interactions per item (popularity, log-Q)
    histories: dict[str, list[str]]  # user -> items of their training events, taught or not (neighbours)


def holdout_role(user_id: str, share: float = HOLDOUT_SHARE) -> str:
    """'test', 'valid' or 'train' for a user, the same at every refresh."""
    draw = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if draw < share else "valid" if draw < 2 * share else "train"


EventFilter = Callable[[Event], bool]


def newer_and_sampled(since_ts: float, replay: float, new: int, old: int, seed: int = 0) -> EventFilter:
    """Events after `since_ts`, and about `replay` older ones for each of the
    `new` (of `old`), drawn uniformly: the warm refresh's teaching events."""
    share, draw = min(1.0, replay * new / max(old, 1)), random.Random(seed).random
    return lambda event: event.ts > since_ts or draw() < share


def build_examples(
    events: list[Event],
    catalog: dict[str, Item],
    config: FeatureConfig,
    *,
    purchase_weight: float = 3.0,
    holdout_share: float = HOLDOUT_SHARE,
    teaches: EventFilter = lambda event: True,
) -> Split:
    """Events in any order; duplicates (by event id) are dropped as the worker drops them."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    events = sorted(unique.values(), key=lambda e: e.ts)
    per_user: dict[str, int] = defaultdict(int)
    for event in events:
        per_user[event.user_id] += 1
    window_start: dict[str, int] = {}  # held-out user -> index of the first event of their window
    role_of: dict[str, str] = {}
    held_users = {"test": 0, "valid": 0}
    for user_id, count in per_user.items():
        role = holdout_role(user_id, holdout_share) if count > 1 else "train"
        if role != "train" and held_users[role] < MAX_HOLDOUT_USERS:
            held_users[role] += 1
            role_of[user_id] = role
            window_start[user_id] = count - max(1, round(WINDOW_FRACTION * count))
    position: dict[str, int] = defaultdict(int)
    users: dict[str, UserFeatures] = {}
    past: dict[str, set[str]] = defaultdict(set)  # held-out user -> items before the window
    windows: dict[str, tuple[UserFeatures, set[str]]] = {}  # held-out user -> (state before, items in it)
    split = Split(Examples(), Holdout(), Holdout(), defaultdict(float), defaultdict(list))
    for event in events:
        user_id = event.user_id
        user = users.get(user_id)
        if user is None:  # not setdefault: that would build a UserFeatures for every event
            user = users[user_id] = UserFeatures(user_id)
        in_window = user_id in window_start and position[user_id] >= window_start[user_id]
        position[user_id] += 1
        if in_window:
            if user_id not in windows:  # the state before the window, once
                windows[user_id] = (user.copy(), set())
            windows[user_id][1].add(event.item_id)
            continue
        if user_id in window_start:
            past[user_id].add(event.item_id)
        has_state = bool(user.recent_items)  # a first event has no state to learn from
        before = user.copy() if has_state and teaches(event) else None
        item = catalog.get(event.item_id)
        if not apply_event(user, event, item.category if item else None, config):
            continue
        split.item_counts[event.item_id] += 1.0
        split.histories[user_id].append(event.item_id)  # a first event too: a short session's clicks all count
        if before is not None:
            split.train.add(before, event.item_id, purchase_weight if event.type == "purchase" else 1.0, event.ts)
    for user_id, (state, window) in windows.items():
        targets = window - past[user_id]
        if targets and state.recent_items:
            holdout = split.test if role_of[user_id] == "test" else split.valid
            holdout.states.append(state)
            holdout.targets.append(targets)
            holdout.seen.append(past[user_id])
    return split
