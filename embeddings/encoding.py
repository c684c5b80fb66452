"""The one feature encoding shared by training and serving.

Both sides start from the same records: a `streams.features.UserFeatures`
(what the worker holds; the trainer rebuilds it by folding the same events
with the same `apply_event`) and a catalog `Item`. These functions turn them
into the integer and float arrays the towers take, so what the trainer saw is
exactly what serving computes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from embeddings.hashing import bucket_ids
from embeddings.text import token_matrix
from streams.features import UserFeatures
from streams.schema import Item

PAD, CLICK_TYPE, PURCHASE_TYPE = 0, 1, 2


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoding and the towers (kept in every model's manifest)."""

    dim: int = 64
    hidden: int = 128
    id_buckets: int = 1 << 18
    id_hashes: int = 2
    category_buckets: int = 4096
    text_buckets: int = 1 << 17
    max_title_tokens: int = 48
    max_recent: int = 50
    max_categories: int = 8
    price_buckets: int = 16
    age_buckets: int = 16
    pooling: str = "attention"  # or "decay": recency-weighted mean
    recency_half_life_s: float = 86_400.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def price_bucket(price: float | None, buckets: int) -> int:
    """0 unknown; then log-spaced buckets (1.5 per doubling)."""
    if price is None:
        return 0
    return 1 + min(buckets - 2, int(math.log2(1.0 + max(price, 0.0)) * 1.5))


def age_bucket(age_s: float, buckets: int) -> int:
    """1 for the last minute, then one bucket per doubling of the age."""
    return 1 + min(buckets - 2, int(math.log2(1.0 + max(age_s, 0.0) / 60.0)))


def encode_items(items: list[Item], config: ModelConfig) -> dict[str, np.ndarray]:
    return {
        "item_ids": np.array([bucket_ids(i.item_id, config.id_buckets, config.id_hashes) for i in items], dtype=np.int64).reshape(len(items), config.id_hashes),
        "category": np.array([bucket_ids(i.category, config.category_buckets, 1)[0] for i in items], dtype=np.int64),
        "title": token_matrix([i.title for i in items], config.text_buckets, config.max_title_tokens),
        "price": np.array([price_bucket(i.price, config.price_buckets) for i in items], dtype=np.int64),
    }


def encode_queries(queries: list[str], config: ModelConfig) -> np.ndarray:
    return token_matrix(queries, config.text_buckets, config.max_title_tokens)


def encode_users(
    users: list[UserFeatures], now: float | list[float], config: ModelConfig, affinity_half_life_s: float
) -> dict[str, np.ndarray]:
    """The user side: recent items newest first (ids through the item tower's id
    table, type, age), the strongest category affinities, activity counts.

    `now` is one time for all (serving) or one per user (training examples,
    each seen at its own event time)."""
    nows = now if isinstance(now, list) else [now] * len(users)
    n, r, h, c = len(users), config.max_recent, config.id_hashes, config.max_categories
    recent_ids = np.zeros((n, r, h), dtype=np.int64)
    recent_types = np.zeros((n, r), dtype=np.int64)
    recent_ages = np.zeros((n, r), dtype=np.int64)
    recent_age_s = np.zeros((n, r), dtype=np.float32)
    categories = np.zeros((n, c), dtype=np.int64)
    category_weights = np.zeros((n, c), dtype=np.float32)
    counts = np.zeros((n, 2), dtype=np.float32)
    for row, (user, now) in enumerate(zip(users, nows, strict=True)):
        newest_first = list(zip(user.recent_items, user.recent_ts, user.recent_types, strict=True))[::-1][:r]
        for slot, (item_id, ts, kind) in enumerate(newest_first):
            recent_ids[row, slot] = bucket_ids(item_id, config.id_buckets, h)
            recent_types[row, slot] = PURCHASE_TYPE if kind == "p" else CLICK_TYPE
            recent_ages[row, slot] = age_bucket(now - ts, config.age_buckets)
            recent_age_s[row, slot] = max(now - ts, 0.0)
        affinity = list(user.category_affinity(now, affinity_half_life_s).items())[:c]
        total = sum(w for _, w in affinity) or 1.0
        for slot, (category, weight) in enumerate(affinity):
            categories[row, slot] = bucket_ids(category, config.category_buckets, 1)[0]
            category_weights[row, slot] = weight / total
        counts[row] = (math.log1p(user.clicks), math.log1p(user.purchases))
    return {
        "recent_ids": recent_ids,
        "recent_types": recent_types,
        "recent_ages": recent_ages,
        "recent_age_s": recent_age_s,
        "categories": categories,
        "category_weights": category_weights,
        "counts": counts,
    }
