"""Recommendations without a model: what is popular now, first in the user's
own categories.

Before the first model is trained, and for a user no model can place, the
stream already knows what is popular (the item statistics' window) and what
each user likes (their category affinities). `pick_popular` is the one rule
for both: the model-free answer here and a served index's cold start.
"""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Callable, Iterable, Mapping

from streamrec.foundation.features import UserFeatures
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Item, ScoredItem

LIVE_POPULARITY = "live-popularity"  # the model_version of an answer served without a model
PREFERRED_CATEGORIES = 3  # a user's strongest categories, served first
KEPT = 1000  # the most popular items a model-free answer chooses from
REFRESH_S = 1.0  # how old the popular list may get

Ranked = Iterable[tuple[str, str | None, float]]  # (item id, category, score), best first


def preferred_categories(user: UserFeatures | None, half_life_s: float, now: float | None = None) -> set[str]:
    """The user's strongest categories at `now` (default: the user's newest event)."""
    if user is None:
        return set()
    affinity = user.category_affinity(user.last_ts if now is None else now, half_life_s)
    return set(list(affinity)[:PREFERRED_CATEGORIES])


def excluded_items(user: UserFeatures | None, exclude_clicked: bool) -> set[str]:
    """What a user is never recommended: purchases, and recent clicks when asked."""
    if user is None:
        return set()
    return set(user.purchased) | (set(user.recent_items) if exclude_clicked else set())


def pick_popular(ranked: Callable[[], Ranked], preferred: set[str], excluded: set[str], k: int) -> list[ScoredItem]:
    """The first `k` items of `ranked()` not `excluded`: those of the
    `preferred` categories first, then the rest in popularity order."""
    picked: list[ScoredItem] = []
    seen: set[str] = set()
    for wanted in ([preferred] if preferred else []) + [None]:
        for item_id, category, score in ranked():
            if len(picked) >= k:
                return picked
            if item_id in seen or item_id in excluded or (wanted is not None and category not in wanted):
                continue
            seen.add(item_id)
            picked.append(ScoredItem(item_id, score))
    return picked


class LivePopularity:
    """Model-free answers from live item popularity, refreshed at most every
    REFRESH_S (computed only while someone asks: once a model serves, never)."""

    def __init__(
        self,
        scores: Callable[[], Mapping[str, float]],
        catalog: Mapping[str, Item],
        half_life_s: float,
        exclude_clicked: bool,
    ):
        self._scores = scores  # item id -> interactions in the popularity window
        self._catalog = catalog
        self._half_life_s = half_life_s
        self._exclude_clicked = exclude_clicked
        self._ranked: list[tuple[str, str | None, float]] = []
        self._due = 0.0

    def ranked(self) -> list[tuple[str, str | None, float]]:
        """The KEPT most popular items in stock (or unknown to the catalog),
        scored relative to the first."""
        if time.monotonic() >= self._due:
            self._ranked = self._rank(self._scores())
            self._due = time.monotonic() + REFRESH_S
        return self._ranked

    def _rank(self, scores: Mapping[str, float]) -> list[tuple[str, str | None, float]]:
        catalog = self._catalog
        listed = ((item_id, catalog.get(item_id)) for item_id in scores)
        selling = [(item_id, item) for item_id, item in listed if item is None or item.in_stock]
        top = heapq.nlargest(KEPT, selling, key=lambda pair: (scores[pair[0]], pair[0]))
        best = scores[top[0][0]] if top else 1.0
        return [(item_id, item.category if item else None, scores[item_id] / best) for item_id, item in top]

    def recommend(self, user: UserFeatures | None, k: int, rule: Rule | None = None) -> list[ScoredItem]:
        """The popular items for `user`, through a placement's `rule`'s filters
        (an item the catalog does not know fails them)."""
        preferred = preferred_categories(user, self._half_life_s)
        ranked = self.ranked if rule is None or not rule.filters else functools.partial(self._allowed, rule)
        return pick_popular(ranked, preferred, excluded_items(user, self._exclude_clicked), k)

    def _allowed(self, rule: Rule) -> list[tuple[str, str | None, float]]:
        now = time.time()
        return [entry for entry in self.ranked() if (item := self._catalog.get(entry[0])) and rule.allows(item, now)]
