"""Item neighbours: the second source of recommendations beside the towers.

Three kinds, the top `k` per item over the training window: the cosine
similarity of co-occurrence (how many users had both items, over the root of
how many had each), RP3beta's random walks (co-occurrence that does not
favour what everyone had), and EASE's item-item weights (Steck, "Embarrassingly
Shallow Autoencoders", WWW 2019: the weights that best rebuild each user's
items from their other items, in closed form), the strongest classical
recommender wherever its dense items x items inverse fits. A user's recent
items vote for their neighbours, the newest ones louder where the trainer
found that the session's last clicks say most (a half-life in items, chosen
on validation: STAN's decay, Garg et al. SIGIR 2019). The votes and the towers'
scores are each standardised over the whole catalog and added, the votes
weighted by what the trainer chose on its validation users (0 turns them
off). The strongest open recommenders serve this way, several sources merged
and re-ranked: the towers generalise through content and sequence, the
neighbours remember exactly what went together.

Both standardisations are exact without scoring the whole catalog: a tower
score's mean and variance over the catalog follow from the user vector and
the items' first and second moments; votes are zero outside a few rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.sparse import csr_matrix, diags

EPSILON = 1e-9


@dataclass(frozen=True)
class Neighbours:
    """`rows[i]`: the catalog rows most like item row i (-1 pads); `weights[i]`: their similarity."""

    rows: np.ndarray  # int32 [items, k]
    weights: np.ndarray  # float32 [items, k]

    @classmethod
    def from_histories(
        cls, histories: Sequence[Sequence[int]], items: int, k: int, min_together: int = 1
    ) -> Neighbours:
        """Cosine of co-occurrence, from each user's item rows (the training
        window) or each basket's; pairs seen together fewer than `min_together`
        times are left out (one basket is an accident, two are a habit)."""
        had = _had(histories, items)
        together = had.T.tocsr() @ had  # CSR times CSR: 3.6x faster here than letting scipy convert the product
        norms = np.sqrt(np.maximum(together.diagonal(), EPSILON))
        item = np.repeat(np.arange(items), np.diff(together.indptr))
        similarity = together.data / (norms[item] * norms[together.indices])
        similarity[together.data < min_together] = 0.0
        return cls._top_of_sparse(csr_matrix((similarity, together.indices, together.indptr), shape=together.shape), k)

    @classmethod
    def from_random_walks(cls, histories: Sequence[Sequence[int]], items: int, k: int, beta: float = 0.5) -> Neighbours:
        """RP3beta (Paudel et al., "Updatable, Accurate, Diverse, and Scalable
        Recommendations for Interactive Applications", TiiS 2017): the chance
        of a two-step walk item -> user -> item, each step uniform over the
        edges, over the target's popularity to the `beta`: co-occurrence that
        does not favour what everyone had. Sparse, so it fits any catalog
        co-occurrence fits (EASE's dense inverse stops at
        STREAMREC_MODEL_EASE_MAX_ITEMS)."""
        had = _had(histories, items)
        item_degree = np.maximum(np.asarray(had.sum(axis=0)).ravel(), 1.0)
        user_degree = np.maximum(np.asarray(had.sum(axis=1)).ravel(), 1.0)
        to_users = diags(1.0 / item_degree) @ had.T.tocsr()
        to_items = diags(1.0 / user_degree) @ had
        walks = (to_users @ to_items @ diags(item_degree**-beta)).tocsr()
        return cls._top_of_sparse(walks, k)

    @classmethod
    def _top_of_sparse(cls, scores: csr_matrix, k: int) -> Neighbours:
        """Each row's `k` largest positive entries off the diagonal, best first."""
        items = scores.shape[0]
        rows = np.full((items, k), -1, dtype=np.int32)
        weights = np.zeros((items, k), dtype=np.float32)
        for item in range(items):
            start, end = scores.indptr[item], scores.indptr[item + 1]
            others, values = scores.indices[start:end], scores.data[start:end].copy()
            values[others == item] = 0.0
            if len(values) > k:  # the k best first (cheap), then only they are sorted
                best = np.argpartition(-values, k - 1)[:k]
                top = best[np.argsort(-values[best], kind="stable")]
            else:
                top = np.argsort(-values, kind="stable")
            top = top[values[top] > 0]
            rows[item, : len(top)] = others[top]
            weights[item, : len(top)] = values[top]
        return cls(rows, weights)

    @classmethod
    def from_ease(
        cls, histories: Sequence[Sequence[int]], items: int, k: int, regularisation: float, transitions: float = 0.0
    ) -> Neighbours:
        """EASE's weights `B = I - P diag(1/diag P)`, `P = (X^T X + lambda I)^-1`, each
        item's `k` largest positive ones. With `transitions`, what comes next
        (`transition_weights`, the histories taken as sequences in time order)
        is added at that share, both scaled to the same root mean square.
        Dense: items^2 float32s, a few times over."""
        weights = ease_weights(_had(histories, items), regularisation)
        if transitions > 0:
            weights /= _rms(weights)
            following = transition_weights(histories, items, regularisation)
            weights += following * np.float32(transitions / _rms(following))
        return cls._top_of_dense(weights, k)

    @classmethod
    def _top_of_dense(cls, scores: np.ndarray, k: int, chunk: int = 1024) -> Neighbours:
        """Each row's `k` largest positive entries, best first (a chunk of rows at a time bounds the memory)."""
        items = len(scores)
        k_found = min(k, items)
        rows = np.full((items, k), -1, dtype=np.int32)
        weights = np.zeros((items, k), dtype=np.float32)
        for start in range(0, items, chunk):
            block = scores[start : start + chunk]
            best = np.argpartition(-block, k_found - 1, axis=1)[:, :k_found]
            values = np.take_along_axis(block, best, axis=1)
            order = np.argsort(-values, axis=1, kind="stable")
            best, values = np.take_along_axis(best, order, axis=1), np.take_along_axis(values, order, axis=1)
            positive = values > 0
            rows[start : start + chunk, :k_found] = np.where(positive, best, -1)
            weights[start : start + chunk, :k_found] = np.where(positive, values, 0.0)
        return cls(rows, weights)

    def votes(self, history_rows: np.ndarray, half_life: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rows, votes): each history item's neighbours, their
        similarities summed. `history_rows` oldest first; with a `half_life`
        (in items), an item's vote halves every that many newer items after
        it (the session's newest click says most), else all count alike."""
        decay = recency_decay(len(history_rows), half_life)
        known = (history_rows >= 0) & (history_rows < len(self.rows))
        history_rows, decay = history_rows[known], decay[known]
        rows, weights = self.rows[history_rows].ravel(), (self.weights[history_rows] * decay[:, None]).ravel()
        voted = rows >= 0
        candidates, which = np.unique(rows[voted], return_inverse=True)
        return candidates, np.bincount(which, weights=weights[voted], minlength=len(candidates))

    def remapped(self, ids: Sequence[str], onto: Sequence[str]) -> Neighbours:
        """The same neighbours over another item list (`ids` name this one's rows, `onto` the new rows)."""
        new_row = {item_id: row for row, item_id in enumerate(onto)}
        old_to_new = np.array([new_row.get(item_id, -1) for item_id in ids] + [-1], dtype=np.int32)  # -1 maps to -1
        rows = np.full((len(onto), self.rows.shape[1]), -1, dtype=np.int32)
        weights = np.zeros((len(onto), self.rows.shape[1]), dtype=np.float32)
        for old, item_id in enumerate(ids):
            if item_id in new_row:
                rows[new_row[item_id]] = old_to_new[self.rows[old]]
                weights[new_row[item_id]] = np.where(rows[new_row[item_id]] >= 0, self.weights[old], 0.0)
        return Neighbours(rows, weights)

    def to_arrays(self, name: str = "neighbour") -> dict[str, np.ndarray]:
        return {f"{name}_rows": self.rows, f"{name}_weights": self.weights}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str = "neighbour") -> Neighbours | None:
        if f"{name}_rows" not in arrays:
            return None
        return cls(arrays[f"{name}_rows"].astype(np.int32), arrays[f"{name}_weights"].astype(np.float32))


def recency_decay(count: int, half_life: float) -> np.ndarray:
    """The weights of `count` items, oldest first: halved every `half_life` items back from the newest (0: all 1)."""
    if half_life <= 0:
        return np.ones(count, dtype=np.float32)
    return (0.5 ** (np.arange(count - 1, -1, -1) / half_life)).astype(np.float32)


def newest_last(items: Sequence[str]) -> list[str]:
    """Each item once, at its latest place, oldest first: what votes, by recency."""
    return list(dict.fromkeys(reversed(items)))[::-1]


def _had(histories: Sequence[Sequence[int]], items: int) -> csr_matrix:
    """Users x items, 1 where the user had the item."""
    users = [sorted(set(history)) for history in histories if history]
    indptr = np.cumsum([0] + [len(h) for h in users])
    indices = np.fromiter((row for h in users for row in h), dtype=np.int64, count=int(indptr[-1]))
    return csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(users), items))


def _regularised_inverse(rows: csr_matrix, regularisation: float) -> np.ndarray:
    """`(X^T X + lambda I)^-1`, dense float32 (inverted in place): what EASE and the transitions share."""
    gram = (rows.T @ rows).toarray().astype(np.float32, copy=False)
    gram[np.diag_indices(len(gram))] += regularisation
    return scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)


def ease_weights(had: csr_matrix, regularisation: float) -> np.ndarray:
    """EASE's dense item-item weights from a users x items matrix (float32, in place where it can)."""
    weights = _regularised_inverse(had, regularisation)
    weights /= -np.diag(weights)  # column j over P[j, j]
    np.fill_diagonal(weights, 0.0)
    return weights


TRANSITION_WINDOW = 10  # the clicks before a click that predict it (older ones weigh < 0.2% at a half-life of 1)


def transition_weights(
    sequences: Sequence[Sequence[int]], items: int, regularisation: float, half_life: float = 1.0
) -> np.ndarray:
    """The item-item weights that best predict each click from the clicks just
    before it, in closed form (SLIT: Choi et al., "Session-aware Linear
    Item-Item Models for Session-based Recommendation", WWW 2021):
    `B = (S^T S + lambda I)^-1 S^T T`, a row of S the clicks before one click
    (each halved every `half_life` clicks back), of T that click. Directed,
    where EASE is not: what comes next, not what goes together."""
    flat = np.fromiter((row for sequence in sequences for row in sequence), dtype=np.int64)
    starts = np.cumsum([0] + [len(sequence) for sequence in sequences])[:-1]
    position = np.arange(len(flat)) - np.repeat(starts, [len(sequence) for sequence in sequences])
    rows, cols, values = [], [], []
    for back in range(1, TRANSITION_WINDOW + 1):
        later = np.flatnonzero(position >= back)  # clicks with a click `back` before them in their sequence
        rows.append(later)
        cols.append(flat[later - back])
        values.append(np.full(len(later), 0.5 ** ((back - 1) / half_life), dtype=np.float32))
    shape = (len(flat), items)
    before = csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    taught = np.flatnonzero(position >= 1)
    then = csr_matrix((np.ones(len(taught), dtype=np.float32), (taught, flat[taught])), shape=shape)
    weights = _regularised_inverse(before, regularisation) @ (before.T @ then).toarray().astype(np.float32, copy=False)
    np.fill_diagonal(weights, 0.0)  # an item is not its own neighbour
    return weights


def _rms(weights: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(weights, dtype=np.float64)))) + EPSILON


def vote_moments(votes: np.ndarray, catalog_size: int) -> tuple[float, float]:
    """Mean and standard deviation of a user's votes over the whole catalog (zero elsewhere)."""
    mean = float(votes.sum()) / catalog_size
    variance = float((votes**2).sum()) / catalog_size - mean**2
    return mean, float(np.sqrt(max(variance, 0.0))) + EPSILON


@dataclass(frozen=True)
class TowerMoments:
    """The catalog's item vectors summarised: any user's score mean and spread follow."""

    mean: np.ndarray  # [dim]
    second: np.ndarray  # [dim, dim]: the mean of v v^T

    @classmethod
    def of(cls, item_vectors: np.ndarray) -> TowerMoments:
        vectors = item_vectors.astype(np.float64)
        return cls(vectors.mean(axis=0), vectors.T @ vectors / max(1, len(vectors)))

    def standardise(self, user_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per user: the mean and standard deviation of u . v over the catalog."""
        users = user_vectors.astype(np.float64)
        mean = users @ self.mean
        variance = np.einsum("ud,de,ue->u", users, self.second, users) - mean**2
        return mean, np.sqrt(np.maximum(variance, 0.0)) + EPSILON


def blended(
    tower: np.ndarray,
    tower_mean: float,
    tower_std: float,
    votes: np.ndarray,
    vote_mean: float,
    vote_std: float,
    weight: float,
) -> np.ndarray:
    """The merged score of candidates: both sources standardised, the votes weighted."""
    return (tower - tower_mean) / tower_std + weight * (votes - vote_mean) / vote_std
