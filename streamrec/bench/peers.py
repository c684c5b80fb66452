"""The classical recommenders streamrec is measured against, each tuned.

implicit's ALS, BPR, item-kNN (cosine) and BM25, EASE (Steck 2019, its full
dense weights) and popularity, fitted on the same training events (every interaction counts one) and tuned by a small
grid on a validation window carved from the training events by the same
protocol: the test window is never looked at until the chosen configuration
is refitted on all training events.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from streamrec.embeddings.neighbours import ease_weights
from streamrec.foundation.schema import Event
from streamrec.trainer.eval_protocol import DEPTH, WindowSplit, judge, window_split, without_past

log = logging.getLogger(__name__)

GRIDS: dict[str, list[dict[str, Any]]] = {
    "als": [
        {"factors": f, "regularization": r, "alpha": a}
        for f in (32, 64, 128)
        for r in (0.1, 1.0, 10.0)
        for a in (1.0, 10.0)
    ],
    "bpr": [{"factors": f, "learning_rate": lr} for f in (32, 64, 128) for lr in (0.01, 0.05)],
    "item-knn": [{"K": k} for k in (20, 50, 100, 200, 400)],
    "bm25": [{"K": k, "K1": k1} for k in (50, 100, 200, 400) for k1 in (0.6, 1.2)],
    "ease": [{"lambda": lam} for lam in (30.0, 100.0, 300.0, 1000.0, 3000.0)],
}
EASE_MAX_ITEMS = 20_000  # its dense float32 inverse: 1.6 GB per copy at 20,000 items, and minutes per lambda


@dataclass
class Peer:
    name: str
    params: dict[str, Any]
    valid_recall_at_20: float
    rankings: dict[str, list[str]]  # test users' lists, without their past items
    train_s: float = 0.0  # fitting the chosen configuration on all training events
    tune_s: float = 0.0  # its grid on the validation window


class Interactions:
    """A user-by-item matrix of the training events, with the id maps."""

    def __init__(self, events: list[Event], item_ids: list[str]):
        self.item_ids = item_ids
        self.item_row = {item: n for n, item in enumerate(item_ids)}
        self.user_ids = list(dict.fromkeys(e.user_id for e in events))
        self.user_row = {user: n for n, user in enumerate(self.user_ids)}
        pairs = Counter(
            (self.user_row[e.user_id], self.item_row[e.item_id]) for e in events if e.item_id in self.item_row
        )
        rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
        self.matrix = csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(self.user_ids), len(item_ids))
        )


class Ease:
    """EASE with implicit's fit/recommend: every item scored from the user's whole history."""

    def __init__(self, regularisation: float):
        self.regularisation = regularisation
        self.weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, matrix: csr_matrix, show_progress: bool = False) -> None:
        self.weights = ease_weights(matrix, self.regularisation)

    def recommend(self, rows, user_items: csr_matrix, N: int, filter_already_liked_items: bool = True):
        scores = np.asarray(user_items @ self.weights)
        if filter_already_liked_items:
            scores[user_items.nonzero()] = -np.inf
        top = np.argpartition(-scores, N - 1, axis=1)[:, :N]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1)


def _make(name: str, params: dict[str, Any]) -> Any:
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    if name == "als":
        return AlternatingLeastSquares(
            factors=params["factors"],
            regularization=params["regularization"],
            alpha=params["alpha"],
            iterations=15,
            random_state=0,
        )
    if name == "bpr":
        return BayesianPersonalizedRanking(
            factors=params["factors"], learning_rate=params["learning_rate"], iterations=100, random_state=0
        )
    if name == "item-knn":
        return CosineRecommender(K=params["K"])
    if name == "bm25":
        return BM25Recommender(K=params["K"], K1=params["K1"], B=0.75)
    if name == "ease":
        return Ease(params["lambda"])
    raise ValueError(f"unknown peer {name!r}")


def _rank(
    name: str, params: dict[str, Any], data: Interactions, users: list[str]
) -> tuple[dict[str, list[str]], float]:
    """Each user's top items by the fitted peer, and the seconds the fit took."""
    started = time.perf_counter()
    # implicit runs its own threads: a BLAS thread pool under them slows ALS down (and it warns). EASE is BLAS.
    with threadpool_limits(None if name == "ease" else 1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # and implicit's notes that it converted a matrix's format
        model = _make(name, params)
        model.fit(data.matrix, show_progress=False)
    fit_s = time.perf_counter() - started
    known = [u for u in users if u in data.user_row]
    rows = np.array([data.user_row[u] for u in known], dtype=np.int64)
    if not len(rows):
        return {}, fit_s
    ids, _ = model.recommend(rows, data.matrix[rows], N=DEPTH, filter_already_liked_items=True)
    return {user: [data.item_ids[i] for i in row if i >= 0] for user, row in zip(known, ids, strict=True)}, fit_s


def popularity(split: WindowSplit, users: list[str]) -> dict[str, list[str]]:
    """The most interacted-with items of the training events, minus each user's own."""
    order = [item for item, _ in Counter(e.item_id for e in split.train).most_common()]
    return without_past(order, {user: split.seen.get(user, set()) for user in users}, DEPTH)


def repeat_baselines(split: WindowSplit, users: list[str], depth: int) -> dict[str, dict[str, list[str]]]:
    """Each user's past purchases by recency alone (newest first) and by frequency alone (ties: newest first)."""
    counts: dict[str, Counter] = {user: Counter() for user in users}
    last: dict[str, dict[str, float]] = {user: {} for user in users}
    for event in split.train:  # in time order
        if event.type == "purchase" and event.user_id in counts:
            counts[event.user_id][event.item_id] += 1
            last[event.user_id][event.item_id] = event.ts
    by = {
        "recency": lambda user, item: last[user][item],
        "frequency": lambda user, item: (counts[user][item], last[user][item]),
    }
    return {
        name: {user: sorted(last[user], key=lambda item, u=user: key(u, item), reverse=True)[:depth] for user in users}
        for name, key in by.items()
    }


def tuned_peers(
    split: WindowSplit,
    item_ids: list[str],
    category_of: dict[str, str],
    names: list[str] | None = None,
    on_status: Callable[[str], None] = lambda line: None,
) -> list[Peer]:
    """Each peer at its best grid point on the validation window, refitted on
    all training events and ranking the test users."""
    inner = window_split(split.train)
    inner_data, full_data = Interactions(inner.train, item_ids), Interactions(split.train, item_ids)
    test_users, valid_users = list(split.targets), list(inner.targets)

    def valid_recall(rankings: dict[str, list[str]]) -> float:
        return judge(rankings, inner.targets, len(item_ids), category_of).recall[20]

    peers = [Peer("popularity", {}, valid_recall(popularity(inner, valid_users)), popularity(split, test_users))]
    for name in names or list(GRIDS):
        if name == "ease" and len(item_ids) > EASE_MAX_ITEMS:
            on_status(f"ease: left out, {len(item_ids):,} items is over {EASE_MAX_ITEMS:,} (a dense items^2 inverse)")
            continue
        best, best_recall, started = GRIDS[name][0], -1.0, time.perf_counter()
        for params in GRIDS[name]:
            recall = valid_recall(_rank(name, params, inner_data, valid_users)[0])
            if recall > best_recall:
                best, best_recall = params, recall
        on_status(f"{name}: best on validation {best} (recall@20 {best_recall:.4f})")
        tune_s = time.perf_counter() - started
        peers.append(Peer(name, best, best_recall, *_rank(name, best, full_data, test_users), tune_s=tune_s))
    return peers
