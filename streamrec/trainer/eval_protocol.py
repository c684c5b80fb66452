"""How recommendations are judged: a window of each user's latest events and
the set of new items in it, ranked against the whole catalog.

The protocol users feel: of the items a user went on to pick that they had
not picked before, how many were on the list shown to them. Each user's
events are taken in time order; the last `fraction` of them (at least one) are
the user's window, the rest is what a recommender may learn from. Items the
user already had are excluded from the ranking and are not targets, so
re-recommending the past earns nothing. The same protocol splits a log for
`streamrec bench quality` and the trainer's held-out set.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np

from streamrec.foundation.schema import Event

WINDOW_FRACTION = 0.2
KS = (1, 2, 5, 10, 20, 50)
DEPTH = max(KS)  # the longest list judged


@dataclass(frozen=True)
class WindowSplit:
    """`train`: every event before its user's window (all events of users with
    a single one); `targets`: per user, the new items of their window;
    `seen`: per user, the items of their training events; `repeats`: per
    user, the items bought in the window that they had bought before it
    (what buy-again is judged on); `windows`: the window's events of each
    user with targets, in time order (what the streaming evaluation sends)."""

    train: list[Event]
    targets: dict[str, set[str]]
    seen: dict[str, set[str]]
    repeats: dict[str, set[str]]
    windows: dict[str, list[Event]]


def window_split(events: Iterable[Event], fraction: float = WINDOW_FRACTION) -> WindowSplit:
    """Split per user by time; users whose window holds no new item get no targets."""
    by_user = _in_time_order_by_user(events)
    train: list[Event] = []
    targets: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    repeats: dict[str, set[str]] = {}
    windows: dict[str, list[Event]] = {}
    for user, history in by_user.items():
        cut = len(history) - max(1, round(fraction * len(history))) if len(history) > 1 else len(history)
        past, window = history[:cut], history[cut:]
        train.extend(past)
        seen[user] = {e.item_id for e in past}
        new = {e.item_id for e in window} - seen[user]
        if past and new:
            targets[user], windows[user] = new, window
        bought_again = _bought(window) & _bought(past)
        if bought_again:
            repeats[user] = bought_again
    train.sort(key=lambda e: e.ts)
    return WindowSplit(train, targets, seen, repeats, windows)


def session_split(events: Iterable[Event], test_days: float = 1.0) -> WindowSplit:
    """Split an anonymous-session log by time (the users are sessions, none
    comes back): sessions that begin in the log's last `test_days` are the
    test ones, their first event known and the rest their window (from the
    second click on, as the session-based protocols score); every other
    session is training data."""
    by_session = _in_time_order_by_user(events)
    cut = max((history[0].ts for history in by_session.values()), default=0.0) - test_days * 86_400
    train: list[Event] = []
    targets: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    windows: dict[str, list[Event]] = {}
    for session, history in by_session.items():
        if history[0].ts <= cut or len(history) < 2:
            train.extend(history)
            continue
        train.append(history[0])
        seen[session] = {history[0].item_id}
        new = {e.item_id for e in history[1:]} - seen[session]
        if new:
            targets[session], windows[session] = new, history[1:]
    train.sort(key=lambda e: e.ts)
    return WindowSplit(train, targets, seen, {}, windows)


def _in_time_order_by_user(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Each user's (or session's) events in time order; stable: ties keep the log's order."""
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.ts):
        by_user[event.user_id].append(event)
    return by_user


def _bought(events: list[Event]) -> set[str]:
    return {e.item_id for e in events if e.type == "purchase"}


def without_past(order: Sequence[str], seen: Mapping[str, Set[str]], depth: int) -> dict[str, list[str]]:
    """Per user, the first `depth` items of one ranking (popularity) the user has not had."""
    return {user: first_new(order, past, depth) for user, past in seen.items()}


def first_new(order: Iterable[str], past: Set[str], depth: int) -> list[str]:
    """The first `depth` items of `order` not in `past`."""
    found: list[str] = []
    for item_id in order:
        if item_id not in past:
            found.append(item_id)
            if len(found) == depth:
                break
    return found


@dataclass
class Quality:
    """Means over the users with targets."""

    recall: dict[int, float]
    ndcg: dict[int, float]
    coverage: float  # share of the catalog that appears in some top-20
    diversity: float  # intra-list diversity of the top-20: share of pairs from different categories
    users: int

    def to_json(self) -> dict[str, float]:
        return {
            **{f"recall@{k}": round(v, 5) for k, v in self.recall.items()},
            **{f"ndcg@{k}": round(v, 5) for k, v in self.ndcg.items()},
            "coverage@20": round(self.coverage, 5),
            "diversity@20": round(self.diversity, 5),
            "users": self.users,
        }


def judge(
    rankings: Mapping[str, Sequence[str]],
    targets: Mapping[str, set[str]],
    catalog_size: int,
    category_of: Mapping[str, str],
    ks: tuple[int, ...] = KS,
) -> Quality:
    """Recall@K (hits over min(K, targets), so a perfect list scores 1 at any K),
    NDCG@K, coverage and diversity of each user's ranked list (already without
    the user's past items); a user missing from `rankings` scores zero."""
    recall: dict[int, list[float]] = {k: [] for k in ks}
    ndcg: dict[int, list[float]] = {k: [] for k in ks}
    shown: set[str] = set()
    diversity = []
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for user, wanted in targets.items():
        ranked = list(rankings.get(user, ()))[: max(ks)]
        hits = np.array([item in wanted for item in ranked] + [False] * (max(ks) - len(ranked)))
        for k in ks:
            ideal = min(k, len(wanted))
            recall[k].append(hits[:k].sum() / ideal)
            ndcg[k].append((hits[:k] * discounts[:k]).sum() / discounts[:ideal].sum())
        top = ranked[:20]
        shown.update(top)
        pairs = list(itertools.combinations(top, 2))
        if pairs:
            diversity.append(sum(category_of.get(a) != category_of.get(b) for a, b in pairs) / len(pairs))
    return Quality(
        recall={k: float(np.mean(v)) if v else 0.0 for k, v in recall.items()},
        ndcg={k: float(np.mean(v)) if v else 0.0 for k, v in ndcg.items()},
        coverage=len(shown) / max(1, catalog_size),
        diversity=float(np.mean(diversity)) if diversity else 0.0,
        users=len(targets),
    )
