"""How found rows become an answer: the first k not excluded, and a cap per
category so one category does not fill the list (plain functions on scores,
rows and ids)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from streamrec.foundation.schema import ScoredItem


def first_k(scores: np.ndarray, rows: np.ndarray, row_ids: list[str], k: int, skip: set[str]) -> list[ScoredItem]:
    """The first k found rows (-1: none found) whose items are not in `skip`."""
    answer = []
    for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
        if row >= 0 and row_ids[row] not in skip:
            answer.append(ScoredItem(row_ids[row], score))
            if len(answer) == k:  # a heavy buyer's search is deep: the rest is never read
                break
    return answer


def diversify(
    ranked: list[ScoredItem], k: int, diversity: float, category_of: Callable[[str], str]
) -> list[ScoredItem]:
    """The first k of `ranked` with at most ceil(k * (1 - diversity)) items
    (at least one) per category, in score order; capped items fill what is
    left when too few categories compete. Diversity 0 changes nothing."""
    if diversity <= 0:
        return ranked[:k]
    cap = max(1, math.ceil(k * (1 - diversity)))
    per_category: Counter[str] = Counter()
    kept, capped = [], []
    for scored in ranked:
        category = category_of(scored.item_id)
        if per_category[category] < cap:
            per_category[category] += 1
            kept.append(scored)
            if len(kept) == k:
                break
        else:
            capped.append(scored)
    return (kept + capped)[:k]
