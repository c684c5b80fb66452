"""The two-tower model: users and items (and search queries) in one space.

Item tower: item id (several hashed rows, summed), category, title tokens and
price bucket. User tower: the recent items through the *same* id and category
tables, with their type and age, pooled by attention or by a recency-decayed
mean; the category affinities; activity counts. Both end L2-normalised, so a
dot product is a cosine and FAISS inner-product search finds the neighbours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from streamrec.embeddings.encoding import ModelConfig, encode_items, encode_users
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.schema import Item


def _mlp(inputs: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, out))


class TwoTower(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.dim
        # The big hashed tables give sparse gradients: a step then updates only
        # the rows its batch touched, not every bucket (see `sparse_tables`).
        self.item_ids = nn.Embedding(config.id_buckets, d, padding_idx=0, sparse=True)
        self.categories = nn.Embedding(config.category_buckets, d, padding_idx=0, sparse=True)
        self.text = nn.EmbeddingBag(config.text_buckets, d, mode="sum", padding_idx=0, sparse=True)
        self.prices = nn.Embedding(config.price_buckets, d)
        self.types = nn.Embedding(3, d, padding_idx=0)
        self.ages = nn.Embedding(config.age_buckets, d, padding_idx=0)
        self.item_mlp = _mlp(4 * d, config.hidden, d)
        self.query_mlp = _mlp(d, config.hidden, d)
        self.attention = nn.Linear(d, 1)
        self.user_mlp = _mlp(3 * d + 2, config.hidden, d)
        for table in (self.item_ids, self.categories, self.text):
            nn.init.normal_(table.weight, std=0.05)

    # --- items and queries ---------------------------------------------------

    def _text(self, tokens: Tensor) -> Tensor:
        """Mean of the token rows (0 is padding)."""
        lengths = (tokens > 0).sum(dim=1, keepdim=True).clamp(min=1)
        return self.text(tokens) / lengths

    def item_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        return self.item_vectors_and_titles(batch)[0]

    def item_vectors_and_titles(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The item vectors, and their titles' token means: training asks the
        query tower to find items by title, and reuses these instead of
        looking the same tokens up twice."""
        titles = self._text(batch["title"])
        parts = [
            self.item_ids(batch["item_ids"]).sum(dim=1),
            self.categories(batch["category"]),
            titles,
            self.prices(batch["price"]),
        ]
        return F.normalize(self.item_mlp(torch.cat(parts, dim=-1)), dim=-1), titles

    def query_vectors(self, tokens: Tensor) -> Tensor:
        return self.query_vectors_of_text(self._text(tokens))

    def query_vectors_of_text(self, text: Tensor) -> Tensor:
        """From token means (`_text`)."""
        return F.normalize(self.query_mlp(text), dim=-1)

    # --- users -----------------------------------------------------------------

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        recent = self.item_ids(batch["recent_ids"]).sum(dim=2)  # [n, r, d]
        recent = recent + self.types(batch["recent_types"]) + self.ages(batch["recent_ages"])
        present = batch["recent_types"] > 0
        if self.config.pooling == "attention":
            scores = self.attention(torch.tanh(recent)).squeeze(-1).masked_fill(~present, -1e9)
            weights = torch.softmax(scores, dim=1) * present.any(dim=1, keepdim=True)
        else:  # recency-decayed mean
            decay = torch.exp2(-batch["recent_age_s"] / self.config.recency_half_life_s) * present
            weights = decay / decay.sum(dim=1, keepdim=True).clamp(min=1e-9)
        pooled = (weights.unsqueeze(-1) * recent).sum(dim=1)
        affinity = (batch["category_weights"].unsqueeze(-1) * self.categories(batch["categories"])).sum(dim=1)
        last = recent[:, 0] * present[:, :1]
        features = torch.cat([pooled, affinity, last, batch["counts"]], dim=-1)
        return F.normalize(self.user_mlp(features), dim=-1)

    def sparse_tables(self) -> list[torch.Tensor]:
        return [self.item_ids.weight, self.categories.weight, self.text.weight]

    def parameter_count(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())


def to_tensors(arrays: dict, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    return {name: torch.as_tensor(array, device=device) for name, array in arrays.items()}


EMBED_CHUNK = 10_000  # items encoded and embedded at once: bounds the memory a big catalog takes


def embed_items(model: TwoTower, items: list[Item]) -> np.ndarray:
    """The items' vectors, float32 [items, dim], on the model's device and back:
    what versions store and indexes hold."""
    chunks = [np.zeros((0, model.config.dim), dtype=np.float32)]
    with torch.no_grad():
        for first in range(0, len(items), EMBED_CHUNK):
            encoded = encode_items(items[first : first + EMBED_CHUNK], model.config)
            chunks.append(model.item_vectors(to_tensors(encoded, _device(model))).cpu().numpy())
    return np.concatenate(chunks)


def embed_users(
    model: TwoTower, users: list[UserFeatures], now: float | list[float], affinity_half_life_s: float
) -> np.ndarray:
    """The users' vectors at `now` (one time, or one per user), float32 [users, dim]: the queries of an index."""
    with torch.no_grad():
        encoded = encode_users(users, now, model.config, affinity_half_life_s)
        return model.user_vectors(to_tensors(encoded, _device(model))).cpu().numpy()


def _device(model: TwoTower) -> torch.device:
    return next(model.parameters()).device
