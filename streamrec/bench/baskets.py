"""`streamrec bench baskets`: do the next baskets hold what `bought-together` lists?

The baskets of the log's first 90% of time teach (as a refresh groups them);
each basket of the last 10% is asked pair by pair: for every ordered pair
(a, b) of its distinct items, is b among a's first k? Beside it, the users'
co-occurrence over the same window (what the recommender's item neighbours
learn) and popularity. Two rates: over all pairs (large baskets weigh
more) and averaged per basket.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from streamrec.embeddings.neighbours import Neighbours
from streamrec.foundation.schema import Event, Item
from streamrec.trainer.data import BOUGHT_TOGETHER_MIN, baskets_of

TEST_SHARE = 0.1  # the newest share of the log's time that is asked


@dataclass(frozen=True)
class BasketReport:
    train_baskets: int
    test_baskets: int
    pairs: int
    build_s: float
    hit_rate: dict[str, float]  # over all ordered pairs
    per_basket: dict[str, float]  # each basket's rate, averaged

    def to_json(self, k: int) -> dict:
        return {"benchmark": "baskets", "k": k, **self.__dict__}


def bench_baskets(events: list[Event], items: list[Item], k: int = 10) -> BasketReport:
    purchases = [e for e in events if e.type == "purchase"]
    if not purchases:
        raise ValueError("the log has no purchases: bought-together learns from baskets")
    cut = float(np.quantile([e.ts for e in purchases], 1 - TEST_SHARE))
    learn = [e for e in purchases if e.ts < cut]
    row = {item.item_id: n for n, item in enumerate(items)}
    learned = [[row[i] for i in basket if i in row] for basket in baskets_of(learn)]
    started = time.perf_counter()
    sources = {"bought_together": Neighbours.from_histories(learned, len(items), k, min_together=BOUGHT_TOGETHER_MIN)}
    build_s = time.perf_counter() - started
    histories: dict[str, list[int]] = {}
    for event in learn:
        if event.item_id in row:
            histories.setdefault(event.user_id, []).append(row[event.item_id])
    sources["users_cooccurrence"] = Neighbours.from_histories(list(histories.values()), len(items), k)
    popular = [row[i] for i, _ in Counter(e.item_id for e in learn if e.item_id in row).most_common(k + 1)]
    asked = [
        sorted({row[i] for i in basket if i in row}) for basket in baskets_of([e for e in purchases if e.ts >= cut])
    ]
    asked = [basket for basket in asked if len(basket) > 1]
    if not asked:
        raise ValueError("no basket of two items in the newest tenth of the log: nothing to ask")
    hits: Counter[str] = Counter()
    per_basket: dict[str, float] = {}
    pairs = 0
    for basket in asked:
        n_pairs = len(basket) * (len(basket) - 1)
        pairs += n_pairs
        for name, answers in _answers(sources, popular, basket, k).items():
            found = sum(len(answer & set(basket)) for answer in answers)
            hits[name] += found
            per_basket[name] = per_basket.get(name, 0.0) + found / n_pairs
    return BasketReport(
        len(learned),
        len(asked),
        pairs,
        round(build_s, 2),
        {name: round(hits[name] / pairs, 4) for name in hits},
        {name: round(per_basket[name] / len(asked), 4) for name in per_basket},
    )


def _answers(sources: dict[str, Neighbours], popular: list[int], basket: list[int], k: int) -> dict[str, list[set]]:
    """Each system's first k for each item of the basket (never the item itself)."""
    answers = {name: [set(n.rows[a][n.rows[a] >= 0].tolist()) - {a} for a in basket] for name, n in sources.items()}
    answers["popularity"] = [set([p for p in popular if p != a][:k]) for a in basket]
    return answers
