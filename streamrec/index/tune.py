"""Tuning a model version's index on its own users: `streamrec tune`, the
trainer's choice kept in each version's manifest (`STREAMREC_INDEX_TUNE=true`),
and a server's own tuning of a version that has none."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from streamrec.embeddings.model import embed_users
from streamrec.embeddings.versions import ModelVersion, load_version
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.settings import TuneSettings
from streamrec.foundation.store import ModelStore
from streamrec.index.cost import BUILDS, Measurement, Target, candidates_for, choose, exact_neighbours, measure
from streamrec.index.kinds import IndexSpec

log = logging.getLogger(__name__)

MIN_USER_QUERIES = 50  # fewer real users than this: item vectors fill the sample


@dataclass(frozen=True)
class Tuning:
    measurements: list[Measurement]
    chosen: Measurement | None
    target: Target
    queries_from_users: int


def target_of(settings: TuneSettings) -> Target:
    return Target(
        recall_floor=settings.recall or None,
        p99_ms=settings.p99_ms or None,
        bytes_per_item=settings.bytes_per_item or None,
        prefer=settings.prefer,
    )


def user_queries(
    version: ModelVersion, users: Iterable[UserFeatures], wanted: int, settings: TuneSettings, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Up to `wanted` query vectors: users with a history (the caller samples
    them), through the version's user tower; item vectors make up the rest when
    there are too few users (a young shop), as similar-item queries. Returns
    the vectors and how many came from users."""
    picked = [u for u in users if u.recent_items][:wanted]
    vectors = np.zeros((0, version.item_vectors.shape[1]), dtype=np.float32)
    if picked:
        clocks = [user.last_ts for user in picked]  # each user's event time, as serving encodes them
        vectors = embed_users(version.model, picked, clocks, settings.affinity_half_life_s)
    if len(picked) < min(wanted, MIN_USER_QUERIES):
        log.warning("only %d users with a history: item vectors stand in for the other queries", len(picked))
        rows = np.random.default_rng(seed).choice(
            len(version.item_vectors), size=min(wanted - len(picked), len(version.item_vectors)), replace=False
        )
        vectors = np.concatenate([vectors, version.item_vectors[rows]])
    return vectors, len(picked)


def tune(
    version: ModelVersion,
    users: Iterable[UserFeatures],
    settings: TuneSettings,
    builds: Iterable[IndexSpec] = BUILDS,
    on_measured: Callable[[list[Measurement]], None] = lambda _: None,
) -> Tuning:
    """Measure `builds` on the version's item vectors with its users' queries
    and choose by the settings' target."""
    queries, from_users = user_queries(version, users, settings.queries, settings)
    truth = exact_neighbours(version.item_vectors, queries, settings.k)
    target = target_of(settings)
    measured = measure(
        version.item_vectors,
        queries,
        truth,
        builds,
        settings.index_batch_size,
        settings.index_threads or None,
        on_measured,
    )
    return Tuning(measured, choose(measured, target), target, from_users)


def best_measured(version: ModelVersion, users: list[UserFeatures], settings: TuneSettings) -> Measurement | None:
    """The cheapest configuration meeting the settings' target among the
    catalog size's candidates, measured on the version's users; None if none meets it."""
    tuning = tune(version, users, settings, builds=candidates_for(len(version.item_ids)))
    if tuning.chosen is None:
        log.warning("no index configuration meets %s for model %s", tuning.target, version.version)
        return None
    log.info(
        "index for model %s: %s (recall %.3f, p99 %.3f ms, %.0f B/item)",
        version.version,
        tuning.chosen.spec.label(),
        tuning.chosen.recall_at_k,
        tuning.chosen.p99_ms,
        tuning.chosen.bytes_per_item,
    )
    return tuning.chosen


def best_spec(version: ModelVersion, users: list[UserFeatures], settings: TuneSettings) -> IndexSpec | None:
    chosen = best_measured(version, users, settings)
    return chosen.spec if chosen is not None else None


def choose_for_version(
    store: ModelStore, settings: TuneSettings, version: str, users: list[UserFeatures]
) -> dict | None:
    """The trainer's hook: the configuration for a just-written version's
    manifest, with what it measured (None: servers build the configured one)."""
    chosen = best_measured(load_version(store, version), users, settings)
    if chosen is None:
        return None
    measured = {
        "k": settings.k,
        "recall": round(chosen.recall_at_k, 4),
        "p99_ms": round(chosen.p99_ms, 3),
        "bytes_per_item": round(chosen.bytes_per_item, 1),
        "queries": settings.queries,
    }
    return {**chosen.spec.to_dict(), "measured": measured}
