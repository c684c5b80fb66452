"""Recall@K, NDCG@K and catalogue coverage with full ranking over the catalog,
for the model and for the popularity baseline on the same held-out events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embeddings.encoding import ModelConfig, encode_items, encode_users
from embeddings.model import TwoTower, to_tensors
from foundation.schema import Item
from trainer.examples import Examples

KS = (5, 10, 20, 50)


@dataclass
class Metrics:
    recall: dict[int, float]
    ndcg: dict[int, float]
    coverage: dict[int, float]
    examples: int


def metrics_from_ranks(ranks: np.ndarray, top: np.ndarray, catalog_size: int, ks: tuple[int, ...]) -> Metrics:
    """`ranks`: 0-based rank of each example's target (a large number when absent);
    `top`: [examples, max(ks)] the recommended rows, for coverage."""
    recall = {k: float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in ks}
    gains = np.where(ranks < max(ks), 1.0 / np.log2(ranks + 2.0), 0.0)
    ndcg = {k: float(np.mean(np.where(ranks < k, gains, 0.0))) if len(ranks) else 0.0 for k in ks}
    coverage = {k: len(np.unique(top[:, :k])) / catalog_size if len(top) else 0.0 for k in ks}
    return Metrics(recall, ndcg, coverage, len(ranks))


def _ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    target_scores = scores[np.arange(len(targets)), targets]
    return (scores > target_scores[:, None]).sum(axis=1)


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


def rank_metrics(
    model: TwoTower,
    examples: EncodedExamples,
    catalog: dict[str, torch.Tensor],
    device: torch.device,
    ks: tuple[int, ...] = KS,
    batch: int = 1024,
) -> Metrics:
    """Metrics of already encoded examples against the encoded catalog (the
    trainer encodes both once and calls this every epoch)."""
    size = len(catalog["price"])
    if not len(examples):
        return metrics_from_ranks(np.zeros(0), np.zeros((0, max(ks)), dtype=np.int64), size, ks)
    model.eval()
    ranks, tops = [], []
    with torch.no_grad():
        vectors = model.item_vectors(catalog)
        for start in range(0, len(examples), batch):
            users = {name: array[start : start + batch] for name, array in examples.users.items()}
            scores = (model.user_vectors(to_tensors(users, device)) @ vectors.T).cpu().numpy()
            ranks.append(_ranks(scores, examples.targets[start : start + batch]))
            tops.append(np.argsort(-scores, axis=1)[:, : max(ks)])
    return metrics_from_ranks(np.concatenate(ranks), np.concatenate(tops), size, ks)


def evaluate_model(
    model: TwoTower,
    examples: Examples,
    items: list[Item],
    config: ModelConfig,
    device: torch.device,
    affinity_half_life_s: float,
    ks: tuple[int, ...] = KS,
) -> Metrics:
    catalog = to_tensors(encode_items(items, config), device)
    return rank_metrics(model, encode_examples(examples, items, config, affinity_half_life_s), catalog, device, ks)


def evaluate_popularity(
    examples: Examples, items: list[Item], item_counts: dict[str, float], ks: tuple[int, ...] = KS
) -> Metrics:
    """The same examples ranked by training popularity (the same list for everyone)."""
    index = {item.item_id: row for row, item in enumerate(items)}
    popularity = np.array([item_counts.get(item.item_id, 0.0) for item in items])
    order = np.argsort(-popularity, kind="stable")
    rank_of = np.empty(len(items), dtype=np.int64)
    rank_of[order] = np.arange(len(items))
    targets = [index[item_id] for item_id in examples.items if item_id in index]
    ranks = rank_of[targets] if targets else np.zeros(0, dtype=np.int64)
    top = np.tile(order[: max(ks)], (len(targets), 1))
    return metrics_from_ranks(ranks, top, len(items), ks)
