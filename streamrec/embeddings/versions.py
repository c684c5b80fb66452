"""Model versions with their towers: a two-tower into the store, and back.

The store (`streamrec.foundation.store`) keeps arrays and a manifest; this is the one
place that knows which arrays make a `TwoTower`, so the trainer, the tests and
the benchmarks publish a model the same way and serving loads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from streamrec.embeddings.encoding import ModelConfig
from streamrec.embeddings.model import TwoTower, embed_items
from streamrec.embeddings.neighbours import Neighbours
from streamrec.foundation.schema import Item
from streamrec.foundation.store import Manifest, ModelStore

__all__ = ["ModelVersion", "load_version", "publish_model"]

BOUGHT_TOGETHER = "bought_together"  # the extras' names of the co-purchase neighbours


@dataclass
class ModelVersion:
    """A published version, loaded: the towers, the catalog's vectors, the manifest."""

    version: str
    path: Path
    model: TwoTower
    config: ModelConfig
    item_ids: list[str]
    item_vectors: np.ndarray  # float32 [items, dim], L2-normalised
    item_popularity: np.ndarray  # float32 [items]
    manifest: Manifest
    neighbours: Neighbours | None = None  # the second source, over the version's item rows
    bought_together: Neighbours | None = None  # co-purchases in baskets, over the same rows

    @property
    def blend_weight(self) -> float:
        """The neighbours' weight the trainer chose on its validation users (0: towers only)."""
        return self.manifest.params.blend.weight if self.neighbours else 0.0

    @property
    def recency_half_life(self) -> float:
        """How fast a recent item's votes fade, in newer items (0: all alike), as the trainer chose it."""
        return self.manifest.params.blend.recency_half_life


def publish_model(
    store: ModelStore,
    model: TwoTower,
    items: list[Item],
    popularity: np.ndarray | None,
    manifest: Manifest,
    *,
    neighbours: Neighbours | None = None,
    bought_together: Neighbours | None = None,
    promote: bool = True,
) -> str:
    """Embed the catalog with `model` and publish both as a new version; returns its name.
    `popularity` (training interactions per item, in `items`' order) defaults to zeros;
    `neighbours` and `bought_together` are over the rows of `items`."""
    weights = {name: tensor.detach().cpu().contiguous().numpy() for name, tensor in model.state_dict().items()}
    popularity = np.zeros(len(items), dtype=np.float32) if popularity is None else popularity
    manifest = replace(manifest, model_config=model.config.to_dict())
    return store.publish(
        weights,
        [i.item_id for i in items],
        embed_items(model, items),
        popularity,
        manifest,
        extras={
            **(neighbours.to_arrays() if neighbours else {}),
            **(bought_together.to_arrays(BOUGHT_TOGETHER) if bought_together else {}),
        },
        promote=promote,
    )


def load_version(store: ModelStore, version: str | None = None, device: torch.device | str = "cpu") -> ModelVersion:
    """A version (default: the current one) ready to serve."""
    stored = store.load(version)
    config = ModelConfig.from_dict(stored.manifest.model_config)
    model = TwoTower(config)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in stored.weights.items()})
    model.to(device).eval()
    return ModelVersion(
        stored.version,
        stored.path,
        model,
        config,
        stored.item_ids,
        stored.item_vectors,
        stored.item_popularity,
        stored.manifest,
        Neighbours.from_arrays(stored.extras),
        Neighbours.from_arrays(stored.extras, BOUGHT_TOGETHER),
    )
