"""Session-based nearest-neighbour peers: V-SkNN and STAN.

The strongest simple session recommenders (Ludewig & Jannach, "Evaluation of
session-based recommendation algorithms", 2018; Garg et al., "Sequence and
Time Aware Neighborhood for Session-based Recommendations", SIGIR 2019), as
`bench streaming` compares the product with them. Both find the past sessions
most like the current one and score those sessions' items:

- V-SkNN: a shared item counts by its position in the current session
  (quadratic: the newest most), neighbours' items are scored by their
  similarity, over the square of how far back the newest shared item lies.
- STAN: positions decay exponentially (lambda_spw), the similarity is a
  cosine, older neighbour sessions count less (lambda_snh days), and a
  neighbour's items count less the further they lie from the shared item in
  that session (lambda_inh).

Their parameters are the ones published for YooChoose (session-rec's
configurations for rsc15): V-SkNN k=100 of the 1,000 most recent sessions,
STAN k=1,000 of 10,000 with lambdas 0.5, 20 days and 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csc_matrix, csr_matrix

DAY_S = 86_400.0


@dataclass(frozen=True)
class SessionKnnConfig:
    neighbours: int
    sample: int  # the most recent sessions holding a current item that are considered
    stan: bool  # STAN's decays, else V-SkNN's
    lambda_spw: float = 0.5  # positions in the current session (STAN)
    lambda_snh_days: float = 20.0  # age of a neighbour session (STAN)
    lambda_inh: float = 0.5  # distance from the shared item in the neighbour session (STAN)


VSKNN = SessionKnnConfig(neighbours=100, sample=1000, stan=False)
STAN = SessionKnnConfig(neighbours=1000, sample=10_000, stan=True)


class SessionKnn:
    """Past sessions as rows (oldest first) of item positions (1-based, an
    item's last one in its session), ready for neighbour queries."""

    def __init__(self, sessions: Mapping[str, Sequence[tuple[float, int]]], items: int, config: SessionKnnConfig):
        """`sessions`: per session id, its (time, item row) clicks."""
        ordered = sorted((clicks for clicks in sessions.values() if clicks), key=lambda c: max(t for t, _ in c))
        self.config = config
        self.ends = np.array([max(t for t, _ in clicks) for clicks in ordered])
        positions = [{row: p for p, (_, row) in enumerate(sorted(clicks), start=1)} for clicks in ordered]
        indptr = np.cumsum([0] + [len(p) for p in positions])
        indices = np.fromiter((r for p in positions for r in p), dtype=np.int64, count=int(indptr[-1]))
        data = np.fromiter((v for p in positions for v in p.values()), dtype=np.float64, count=int(indptr[-1]))
        self.positions = csr_matrix((data, indices, indptr), shape=(len(ordered), items))
        self.positions.sort_indices()
        self.lengths = np.diff(indptr).astype(np.float64)
        self._by_item = csc_matrix(self.positions)  # an item's sessions, oldest first

    def scores(self, clicks: Sequence[int], now: float) -> dict[int, float]:
        """Item row -> score for a current session's clicks (item rows, oldest first) at time `now`."""
        if not clicks:
            return {}
        current = {row: p for p, row in enumerate(clicks, start=1)}  # each item's last position
        rows = np.array(list(current), dtype=np.int64)
        where = np.array(list(current.values()), dtype=np.float64)
        candidates = self._candidates(rows)
        if not len(candidates):
            return {}
        shared = self.positions[candidates][:, rows].toarray()  # [candidates, current items]: positions there
        similarity = self._similarity(shared > 0, where, len(clicks), candidates, now)
        top = np.argsort(-similarity, kind="stable")[: self.config.neighbours]
        top = top[similarity[top] > 0]
        newest = np.argmax((shared[top] > 0) * where, axis=1)  # the newest current item each neighbour shares
        return self._score(candidates[top], similarity[top], shared[top, newest], where[newest], len(clicks))

    def _candidates(self, rows: np.ndarray) -> np.ndarray:
        """The most recent `sample` sessions holding any current item."""
        starts, ends = self._by_item.indptr[rows], self._by_item.indptr[rows + 1]
        holding = np.unique(np.concatenate([self._by_item.indices[a:b] for a, b in zip(starts, ends, strict=True)]))
        return holding[-self.config.sample :]

    def _similarity(self, has: np.ndarray, where: np.ndarray, length: int, candidates, now: float) -> np.ndarray:
        config = self.config
        if not config.stan:
            return has @ (where / length) ** 2
        weights = np.exp((where - length) / config.lambda_spw)
        cosine = (has @ weights) / (np.sqrt((weights**2).sum()) * np.sqrt(self.lengths[candidates]))
        return cosine * np.exp(-np.maximum(now - self.ends[candidates], 0.0) / (config.lambda_snh_days * DAY_S))

    def _score(self, sessions, similarity, shared_at, newest_where, length) -> dict[int, float]:
        """Each neighbour's items, weighted by its similarity and its decays."""
        block = self.positions[sessions]
        row_of = np.repeat(np.arange(len(sessions)), np.diff(block.indptr))
        if self.config.stan:
            weight = similarity[row_of] * np.exp(-np.abs(block.data - shared_at[row_of]) / self.config.lambda_inh)
        else:
            steps = length - newest_where + 1  # 1: the newest click is shared
            weight = (similarity / steps**2)[row_of]
        items, which = np.unique(block.indices, return_inverse=True)
        return dict(zip(items.tolist(), np.bincount(which, weights=weight).tolist(), strict=True))


def ranked(scores: Mapping[int, float], ids: Sequence[str], depth: int) -> list[str]:
    """The `depth` best-scored items' ids."""
    best = sorted(scores.items(), key=lambda pair: -pair[1])[:depth]
    return [ids[row] for row, _ in best]
