"""A model (or popularity) judged on held-out users by `streamrec.trainer.eval_protocol`:
full ranking over the catalog, each user's past left out, the new items of
their window as targets. What `train`'s early stopping, the gate, the
manifest and `evaluate` report is what `streamrec bench quality` measures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from streamrec.embeddings.encoding import ModelConfig, encode_items, encode_users
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.embeddings.neighbours import Neighbours, blended, newest_last, vote_moments
from streamrec.embeddings.versions import ModelVersion
from streamrec.foundation.schema import Item
from streamrec.trainer.eval_protocol import KS, Quality, judge, without_past
from streamrec.trainer.examples import Examples, Holdout, Split

BATCH = 1024  # held-out users scored at once


@dataclass
class EncodedExamples:
    """Examples whose item is in the catalog, encoded once: user arrays,
    catalog rows of the targets, weights."""

    users: dict[str, np.ndarray]
    targets: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


def encode_examples(
    examples: Examples, items: list[Item], config: ModelConfig, affinity_half_life_s: float
) -> EncodedExamples:
    index = {item.item_id: row for row, item in enumerate(items)}
    keep = [n for n, item_id in enumerate(examples.items) if item_id in index]
    users = encode_users(
        [examples.states[n] for n in keep], [examples.times[n] for n in keep], config, affinity_half_life_s
    )
    targets = np.array([index[examples.items[n]] for n in keep], dtype=np.int64)
    weights = np.array([examples.weights[n] for n in keep], dtype=np.float32)
    return EncodedExamples(users, targets, weights)


@dataclass
class EncodedHoldout:
    """Held-out users encoded once (each at their own last event's time), with
    the catalog rows of their past; the trainer judges it every epoch."""

    holdout: Holdout
    users: dict[str, np.ndarray]
    past_rows: list[np.ndarray]
    recent_rows: list[np.ndarray]  # what votes for neighbours, as at serving time (-1: not in the catalog)


def encode_holdout(
    holdout: Holdout, items: list[Item], config: ModelConfig, affinity_half_life_s: float
) -> EncodedHoldout:
    index = {item.item_id: row for row, item in enumerate(items)}
    users = encode_users(holdout.states, [s.last_ts for s in holdout.states], config, affinity_half_life_s)
    past = [np.array([index[i] for i in seen if i in index], dtype=np.int64) for seen in holdout.seen]
    recent = [
        np.array([index.get(i, -1) for i in newest_last(state.recent_items)], dtype=np.int64)
        for state in holdout.states
    ]
    return EncodedHoldout(holdout, users, past, recent)


def _judge_rankings(holdout: Holdout, rankings: dict[str, list[str]], items: list[Item], ks) -> Quality:
    targets = {str(n): wanted for n, wanted in enumerate(holdout.targets)}
    return judge(rankings, targets, len(items), {item.item_id: item.category for item in items}, ks)


SCORES_PER_BATCH = 50_000_000  # users x items scored at once: bounds the memory a big catalog takes


def _score_batches(
    model: TwoTower, encoded: EncodedHoldout, catalog: dict[str, torch.Tensor], device: torch.device
) -> Iterator[tuple[int, np.ndarray]]:
    """(first user, the towers' scores [users, items]) for the held-out users, a batch at a time."""
    model.eval()
    items = len(catalog["price"])
    batch = max(1, min(BATCH, SCORES_PER_BATCH // max(1, items)))
    with torch.no_grad():
        vectors = model.item_vectors(catalog)
        for start in range(0, len(encoded.holdout), batch):
            users = {name: array[start : start + batch] for name, array in encoded.users.items()}
            yield start, (model.user_vectors(to_tensors(users, device)) @ vectors.T).cpu().numpy()


Mix = tuple[float, float]  # the neighbours' (blend weight, recency half-life)


def ranked_lists(
    model: TwoTower,
    encoded: EncodedHoldout,
    catalog: dict[str, torch.Tensor],
    items: list[Item],
    device: torch.device,
    depth: int,
    neighbours: Neighbours | None = None,
    mixes: tuple[Mix, ...] = ((0.0, 0.0),),
) -> dict[Mix, dict[str, list[str]]]:
    """Per mix, each held-out user's top `depth` items (keyed by position in
    the holdout): the towers' scores, blended with the neighbours' votes
    standardised exactly as serving does, the past left out."""
    rankings: dict[Mix, dict[str, list[str]]] = {mix: {} for mix in mixes}
    depth = min(depth, len(items))
    half_lives = {half_life for weight, half_life in mixes if weight > 0}
    for start, scores in _score_batches(model, encoded, catalog, device):
        for offset, tower in enumerate(scores):
            n = start + offset
            votes = {}
            if neighbours is not None:
                votes = {h: _votes(neighbours, encoded.recent_rows[n], h, len(tower)) for h in half_lives}
            for weight, half_life in mixes:
                row = tower.astype(np.float64)
                if weight > 0 and half_life in votes:
                    voted, vote_mean, vote_std = votes[half_life]
                    row = blended(row, row.mean(), row.std() + 1e-9, voted, vote_mean, vote_std, weight)
                row[encoded.past_rows[n]] = -np.inf
                top = np.argpartition(-row, depth - 1)[:depth]
                rankings[(weight, half_life)][str(n)] = [items[r].item_id for r in top[np.argsort(-row[top])]]
    return rankings


def _votes(
    neighbours: Neighbours, recent_rows: np.ndarray, half_life: float, catalog_size: int
) -> tuple[np.ndarray, float, float]:
    """A user's votes over the whole catalog, with their mean and spread."""
    votes = np.zeros(catalog_size)
    candidates, voted = neighbours.votes(recent_rows, half_life)
    votes[candidates] = voted
    return (votes, *vote_moments(voted, catalog_size))


def judge_encoded(
    model: TwoTower,
    encoded: EncodedHoldout,
    catalog: dict[str, torch.Tensor],
    items: list[Item],
    device: torch.device,
    ks: tuple[int, ...] = KS,
    neighbours: Neighbours | None = None,
    mix: Mix = (0.0, 0.0),
) -> Quality:
    """The model's top items for each held-out user (with its neighbours mixed in by `mix`), judged."""
    lists = ranked_lists(model, encoded, catalog, items, device, max(ks), neighbours, (mix,))[mix]
    return _judge_rankings(encoded.holdout, lists, items, ks)


def judge_model(
    model: TwoTower,
    holdout: Holdout,
    items: list[Item],
    config: ModelConfig,
    device: torch.device,
    affinity_half_life_s: float,
    ks: tuple[int, ...] = KS,
    neighbours: Neighbours | None = None,
    mix: Mix = (0.0, 0.0),
) -> Quality:
    """A model (with its neighbours mixed in by `mix`, as it is served) on held-out users."""
    catalog = to_tensors(encode_items(items, config), device)
    encoded = encode_holdout(holdout, items, config, affinity_half_life_s)
    return judge_encoded(model, encoded, catalog, items, device, ks, neighbours, mix)


BLEND_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # 4: the neighbours lead, the towers break ties
HALF_LIVES = (0.0, 1.0, 3.0, 10.0)  # 0: every recent item votes alike; 1: the newest click says most


def choose_blend(
    model: TwoTower,
    neighbours: Neighbours,
    holdout: Holdout,
    items: list[Item],
    config: ModelConfig,
    device: torch.device,
    affinity_half_life_s: float,
    k: int = 20,
) -> tuple[Mix, dict[Mix, float]]:
    """The neighbours' weight and recency half-life with the best recall@k on
    `holdout` (the validation users; never the test ones), and recall@k at
    every mix tried: the weights with every item alike, the half-lives at the
    best weight, then halfway to the best weight's neighbours in the grid."""
    catalog = to_tensors(encode_items(items, config), device)
    encoded = encode_holdout(holdout, items, config, affinity_half_life_s)
    recalls: dict[Mix, float] = {}

    def best(mixes: tuple[Mix, ...]) -> Mix:
        new = tuple(mix for mix in mixes if mix not in recalls)
        lists = ranked_lists(model, encoded, catalog, items, device, k, neighbours, new)
        recalls.update({mix: _judge_rankings(holdout, lists[mix], items, (k,)).recall[k] for mix in new})
        return max(recalls, key=lambda mix: (recalls[mix], -mix[0], -mix[1]))

    weight, _ = best(tuple((w, 0.0) for w in BLEND_WEIGHTS))
    _, half_life = best(tuple((weight, h) for h in HALF_LIVES)) if weight > 0 else (weight, 0.0)
    at = BLEND_WEIGHTS.index(weight)
    around = BLEND_WEIGHTS[max(0, at - 1) : at + 2]
    return best(tuple(((a + b) / 2, half_life) for a, b in itertools.pairwise(around))), recalls


def judge_popularity(
    holdout: Holdout, items: list[Item], item_counts: dict[str, float], ks: tuple[int, ...] = KS
) -> Quality:
    """The same users ranked by training popularity, each without their past."""
    order = [item.item_id for item in sorted(items, key=lambda i: -item_counts.get(i.item_id, 0.0))]
    rankings = without_past(order, {str(n): seen for n, seen in enumerate(holdout.seen)}, max(ks))
    return _judge_rankings(holdout, rankings, items, ks)


@dataclass
class Evaluation:
    """Model and popularity on the same held-out users."""

    model: Quality
    popularity: Quality


def evaluate_version(
    version: ModelVersion, split: Split, items: list[Item], half_life_s: float, ks: tuple[int, ...] = KS
) -> Evaluation:
    """A version as it is served (with its neighbours at its weight) on the split's test users."""
    device = next(version.model.parameters()).device
    neighbours = (
        version.neighbours.remapped(version.item_ids, [i.item_id for i in items]) if version.neighbours else None
    )
    model = judge_model(
        version.model,
        split.test,
        items,
        version.config,
        device,
        half_life_s,
        ks,
        neighbours,
        (version.blend_weight, version.recency_half_life),
    )
    return Evaluation(model, judge_popularity(split.test, items, split.item_counts, ks))
