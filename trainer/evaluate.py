"""A model (or popularity) judged on held-out users by `trainer.protocol`:
full ranking over the catalog, each user's past left out, the new items of
their window as targets. What `train`'s early stopping, the gate, the
manifest and `evaluate` report is what `streamrec bench quality` measures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embeddings.encoding import ModelConfig, encode_items, encode_users
from embeddings.model import TwoTower, to_tensors
from foundation.schema import Item
from trainer.examples import Examples, Holdout
from trainer.protocol import KS, Quality, judge

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


def encode_holdout(
    holdout: Holdout, items: list[Item], config: ModelConfig, affinity_half_life_s: float
) -> EncodedHoldout:
    index = {item.item_id: row for row, item in enumerate(items)}
    users = encode_users(holdout.states, [s.last_ts for s in holdout.states], config, affinity_half_life_s)
    past = [np.array([index[i] for i in seen if i in index], dtype=np.int64) for seen in holdout.seen]
    return EncodedHoldout(holdout, users, past)


def _judge_rankings(holdout: Holdout, rankings: dict[str, list[str]], items: list[Item], ks) -> Quality:
    targets = {str(n): wanted for n, wanted in enumerate(holdout.targets)}
    return judge(rankings, targets, len(items), {item.item_id: item.category for item in items}, ks)


def judge_encoded(
    model: TwoTower,
    encoded: EncodedHoldout,
    catalog: dict[str, torch.Tensor],
    items: list[Item],
    device: torch.device,
    ks: tuple[int, ...] = KS,
) -> Quality:
    """The model's top items for each held-out user, judged."""
    model.eval()
    rankings: dict[str, list[str]] = {}
    depth = min(max(ks), len(items))
    with torch.no_grad():
        vectors = model.item_vectors(catalog)
        for start in range(0, len(encoded.holdout), BATCH):
            users = {name: array[start : start + BATCH] for name, array in encoded.users.items()}
            scores = (model.user_vectors(to_tensors(users, device)) @ vectors.T).cpu().numpy()
            for offset, row_scores in enumerate(scores):
                row_scores[encoded.past_rows[start + offset]] = -np.inf
                top = np.argpartition(-row_scores, depth - 1)[:depth]
                top = top[np.argsort(-row_scores[top])]
                rankings[str(start + offset)] = [items[r].item_id for r in top]
    return _judge_rankings(encoded.holdout, rankings, items, ks)


def judge_model(
    model: TwoTower,
    holdout: Holdout,
    items: list[Item],
    config: ModelConfig,
    device: torch.device,
    affinity_half_life_s: float,
    ks: tuple[int, ...] = KS,
) -> Quality:
    catalog = to_tensors(encode_items(items, config), device)
    return judge_encoded(
        model, encode_holdout(holdout, items, config, affinity_half_life_s), catalog, items, device, ks
    )


def judge_popularity(
    holdout: Holdout, items: list[Item], item_counts: dict[str, float], ks: tuple[int, ...] = KS
) -> Quality:
    """The same users ranked by training popularity, each without their past."""
    order = [item.item_id for item in sorted(items, key=lambda i: -item_counts.get(i.item_id, 0.0))]
    depth = max(ks)
    rankings = {}
    for n, seen in enumerate(holdout.seen):
        ranked = []
        for item_id in order:
            if item_id not in seen:
                ranked.append(item_id)
                if len(ranked) == depth:
                    break
        rankings[str(n)] = ranked
    return _judge_rankings(holdout, rankings, items, ks)
