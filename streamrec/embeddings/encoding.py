"""The one feature encoding shared by training and serving.

Both sides start from the same records: a `streamrec.foundation.features.UserFeatures`
(what the worker holds; the trainer rebuilds it by folding the same events
with the same `apply_event`) and a catalog `Item`. These functions turn them
into the integer and float arrays the towers take, so what the trainer saw is
exactly what serving computes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from streamrec.embeddings.hashing import bucket_ids, bucket_matrix
from streamrec.embeddings.text import token_matrix
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings

PAD, CLICK_TYPE, PURCHASE_TYPE = 0, 1, 2


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoding and the towers (kept in every model's manifest)."""

    dim: int = Settings.default("model_dim")
    hidden: int = Settings.default("model_hidden")
    id_buckets: int = Settings.default("model_id_buckets")
    id_hashes: int = 2
    category_buckets: int = 4096
    text_buckets: int = Settings.default("model_text_buckets")
    max_title_tokens: int = 48
    max_recent: int = Settings.default("model_max_recent")
    max_categories: int = 8
    price_buckets: int = 16
    age_buckets: int = 16
    pooling: str = Settings.default("model_pooling")  # or "decay": recency-weighted mean
    recency_half_life_s: float = 86_400.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelConfig:
        return settings.section(cls, "model_")


def price_bucket(price: float | None, buckets: int) -> int:
    """0 unknown; then log-spaced buckets (1.5 per doubling)."""
    if price is None:
        return 0
    return 1 + min(buckets - 2, int(math.log2(1.0 + max(price, 0.0)) * 1.5))


def age_buckets(ages_s: np.ndarray, buckets: int) -> np.ndarray:
    """1 for the last minute, then one bucket per doubling of the age."""
    doublings = np.floor(np.log2(1.0 + np.maximum(ages_s, 0.0) / 60.0))
    return 1 + np.minimum(buckets - 2, doublings).astype(np.int64)


def encode_items(items: list[Item], config: ModelConfig) -> dict[str, np.ndarray]:
    return {
        "item_ids": np.array(
            [bucket_ids(i.item_id, config.id_buckets, config.id_hashes) for i in items], dtype=np.int64
        ).reshape(len(items), config.id_hashes),
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

    `now` is one time for all or one per user: event time in both training
    (each example at its event's time) and serving (each user at the time of
    the newest event). The recent items of all users are
    gathered into flat arrays first: each distinct id is hashed once, and ages
    and types are computed by numpy, not per slot in Python. The slots end at
    the longest history among `users` (at most `max_recent`): the tower masks
    padding out, so a batch of new users (a burst's) costs it a few slots, not all.
    """
    nows = np.asarray(now if isinstance(now, list) else [now] * len(users), dtype=np.float64)
    longest = max((len(user.recent_items) for user in users), default=0)
    n, r, h, c = len(users), max(1, min(config.max_recent, longest)), config.id_hashes, config.max_categories
    rows: list[int] = []
    slots: list[int] = []
    ids: list[str] = []
    times: list[float] = []
    kinds: list[str] = []
    categories = np.zeros((n, c), dtype=np.int64)
    category_weights = np.zeros((n, c), dtype=np.float32)
    counts = np.zeros((n, 2), dtype=np.float32)
    category_rows: dict[str, int] = {}
    for row, user in enumerate(users):
        k = min(len(user.recent_items), r)
        if k:
            ids.extend(user.recent_items[: -k - 1 : -1])
            times.extend(user.recent_ts[: -k - 1 : -1])
            kinds.append(user.recent_types[: -k - 1 : -1])
            rows.extend([row] * k)
            slots.extend(range(k))
        affinity = list(user.category_affinity(float(nows[row]), affinity_half_life_s).items())[:c]
        total = sum(w for _, w in affinity) or 1.0
        for slot, (category, weight) in enumerate(affinity):
            if category not in category_rows:
                category_rows[category] = bucket_ids(category, config.category_buckets, 1)[0]
            categories[row, slot] = category_rows[category]
            category_weights[row, slot] = weight / total
        counts[row] = (math.log1p(user.clicks), math.log1p(user.purchases))
    recent_ids = np.zeros((n, r, h), dtype=np.int64)
    recent_types = np.zeros((n, r), dtype=np.int64)
    recent_ages = np.zeros((n, r), dtype=np.int64)
    recent_age_s = np.zeros((n, r), dtype=np.float32)
    if rows:
        distinct: dict[str, int] = {}
        codes = np.fromiter((distinct.setdefault(i, len(distinct)) for i in ids), dtype=np.int64, count=len(ids))
        at = (np.asarray(rows), np.asarray(slots))
        recent_ids[at] = bucket_matrix(list(distinct), config.id_buckets, h)[codes]
        purchased = np.frombuffer("".join(kinds).encode(), dtype=np.uint8) == ord("p")
        recent_types[at] = np.where(purchased, PURCHASE_TYPE, CLICK_TYPE)
        ages = np.maximum(nows[at[0]] - np.asarray(times, dtype=np.float64), 0.0)
        recent_ages[at] = age_buckets(ages, config.age_buckets)
        recent_age_s[at] = ages
    return {
        "recent_ids": recent_ids,
        "recent_types": recent_types,
        "recent_ages": recent_ages,
        "recent_age_s": recent_age_s,
        "categories": categories,
        "category_weights": category_weights,
        "counts": counts,
    }
