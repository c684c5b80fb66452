"""One trainer run: refresh the data, train, evaluate, publish behind the gate.

The gate compares the new model and the current one on the *same* held-out
users' windows (the newest split, by `trainer.protocol`), so "not worse"
means the same thing for both, and what users of the served API would feel. A
run that fails anywhere leaves the current version untouched: a version is
only made current after it is completely written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from embeddings.device import pick_device
from embeddings.encoding import ModelConfig
from embeddings.neighbours import Neighbours
from embeddings.versions import ModelVersion, load_version, publish_model
from foundation.codec import encode
from foundation.features import FeatureConfig, UserFeatures
from foundation.kafka import start_producer
from foundation.privacy import Pseudonyms
from foundation.schema import Event, Item, Limits
from foundation.settings import Settings
from foundation.store import MODEL_NAME, DataWindow, Manifest, ModelStore
from foundation.topics import Topics, ensure_topics
from trainer.cache import InteractionCache
from trainer.evaluate import choose_blend, judge_model, judge_popularity
from trainer.examples import EventFilter, Split, build_examples, newer_and_sampled
from trainer.protocol import KS, Quality
from trainer.train import TrainConfig, train

log = logging.getLogger(__name__)

GATE_K = 20


def train_config(settings: Settings) -> TrainConfig:
    return settings.section(TrainConfig, "train_", eval_k=GATE_K)


def cache_dir(settings: Settings):
    return settings.data_dir / "trainer" / "cache"


def open_cache(settings: Settings) -> InteractionCache:
    return InteractionCache.open(cache_dir(settings), settings.train_max_events, settings.cache_max_age_days * 86_400)


async def refresh_cache(
    settings: Settings, bootstrap: str, cache: InteractionCache, on_progress: Callable[[int], None] = lambda n: None
):
    await ensure_topics(settings, bootstrap)
    group = settings.topic(f"{settings.app_id}-trainer")
    return await cache.refresh(
        bootstrap,
        Topics.from_settings(settings),
        group,
        Limits.from_settings(settings),
        Pseudonyms.from_settings(settings),
        on_progress,
    )


def catalog_of(cache: InteractionCache) -> list[Item]:
    """The catalog items, plus a bare item for every id seen only in events
    (a log replayed without an item file): the id alone still trains."""
    items = dict(cache.items)
    for event in cache.events:
        if event.item_id not in items:
            items[event.item_id] = Item(event.item_id, "", "")
    return list(items.values())


@dataclass
class Evaluation:
    """Model and popularity on the same held-out users."""

    model: Quality
    popularity: Quality


def split_of(
    events: list[Event], items: list[Item], settings: Settings, teaches: EventFilter = lambda event: True
) -> Split:
    """Training, validation and test examples of the log, as the worker folds it."""
    return build_examples(
        events,
        {i.item_id: i for i in items},
        FeatureConfig.from_settings(settings),
        purchase_weight=settings.purchase_weight,
        teaches=teaches,
    )


WARM_MAX_NEW_SHARE = 0.5  # above it a warm refresh saves little and learns less than a full one (the demo's case)


@dataclass(frozen=True)
class Plan:
    """A refresh from scratch ("full") or from the current version's weights
    ("warm": on the events after its data window, and a sample of the older
    ones). Ids and text are hashed into fixed buckets, so a new item or word
    has its rows already and no learned row moves: only a changed model shape
    (the manifest's `model_config`) forbids continuing."""

    kind: str
    reason: str
    base: str | None = None
    since_ts: float = float("-inf")
    warm_in_a_row: int = 0  # warm refreshes since the last full one, this one included
    new_events: int = 0  # of the window, after `since_ts`

    def teaches(self, events: list[Event], settings: Settings) -> EventFilter:
        if self.kind == "full":
            return lambda event: True
        old = len(events) - self.new_events
        return newer_and_sampled(self.since_ts, settings.train_warm_replay, self.new_events, old, settings.train_seed)


def new_events_since_current(store: ModelStore, cache: InteractionCache) -> int:
    """Events newer than the current version's data window (all, before the first)."""
    if store.current() is None:
        return len(cache.events)
    window = store.load_manifest(store.current()).data_window
    last_ts = window.last_ts if window is not None else float("-inf")
    return sum(1 for e in cache.events if e.ts > last_ts)


def plan_refresh(settings: Settings, store: ModelStore, cache: InteractionCache, *, full: bool = False) -> Plan:
    current = store.current()
    if current is None:
        return Plan("full", "first version")
    if full:
        return Plan("full", "asked for")
    manifest = store.load_manifest(current)
    in_a_row = int(manifest.training.get("warm_in_a_row", 0)) + 1
    if in_a_row >= settings.train_full_every:
        return Plan("full", f"every {settings.train_full_every}th refresh (STREAMREC_TRAIN_FULL_EVERY)")
    if ModelConfig.from_dict(manifest.model_config) != ModelConfig.from_settings(settings):
        return Plan("full", f"the model's shape differs from {current}'s")
    new = new_events_since_current(store, cache)  # all of them, for a version without a data window
    if not new:
        return Plan("full", f"no events after {current}'s data window")
    if new > WARM_MAX_NEW_SHARE * len(cache.events):
        return Plan("full", f"{new / len(cache.events):.0%} of the window is new: small steps would under-learn it")
    return Plan("warm", f"from {current}", current, manifest.data_window.last_ts, in_a_row, new)


def evaluate_version(
    version: ModelVersion, split: Split, items: list[Item], settings: Settings, ks: tuple[int, ...] = KS
) -> Evaluation:
    """A version as it is served (with its neighbours at its weight) on the split's test users."""
    device = next(version.model.parameters()).device
    neighbours = (
        version.neighbours.remapped(version.item_ids, [i.item_id for i in items]) if version.neighbours else None
    )
    model = judge_model(version.model, split.test, items, version.config, device, settings.affinity_half_life_s, ks,
                        neighbours, version.blend_weight)  # fmt: skip
    return Evaluation(model, judge_popularity(split.test, items, split.item_counts, ks))


def neighbours_of(split: Split, items: list[Item], k: int) -> Neighbours | None:
    """Item neighbours from the training examples alone (no held-out window leaks in)."""
    if k <= 0:
        return None
    row = {item.item_id: n for n, item in enumerate(items)}
    histories = [[row[i] for i in history if i in row] for history in split.histories.values()]
    return Neighbours.from_histories(histories, len(items), k)


IndexChooser = Callable[[str, list[UserFeatures]], dict | None]  # (version, users) -> the manifest's `index`


def latest_states(split: Split, n: int) -> list[UserFeatures]:
    """Up to `n` users' newest states known to the trainer: the queries a version's index is tuned with."""
    newest: dict[str, UserFeatures] = {}
    for state in reversed([*split.train.states, *split.valid.states, *split.test.states]):
        newest.setdefault(state.user_id, state)
        if len(newest) >= n:
            break
    return list(newest.values())


class Phases:
    """Seconds between successive `end`s: where a run's time went."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._since = time.time()

    def end(self, name: str) -> None:
        now = time.time()
        self.seconds[name], self._since = round(now - self._since, 2), now


@dataclass
class RunOutcome:
    version: str | None = None
    promoted: bool = False
    reason: str = ""
    manifest: Manifest | None = None


def train_and_publish(
    settings: Settings,
    cache: InteractionCache,
    store: ModelStore,
    *,
    force: bool = False,
    full: bool = False,
    device: torch.device | None = None,
    on_progress: Callable[[dict], None] = lambda s: None,
    choose_index: IndexChooser | None = None,
) -> RunOutcome:
    """Train on the cache, write a version, make it current if the gate passes.

    The refresh is warm or full by `plan_refresh` (`full` insists on full).

    `choose_index(version, users)`, given, tunes the written version's index
    before it is promoted; its answer goes into the manifest, and every server
    and worker builds that instead of tuning on its own."""
    started, phases = time.time(), Phases()
    device = device or pick_device()
    items = catalog_of(cache)
    if not cache.events:
        raise RuntimeError("no events to learn from: the event topics are empty")
    plan = plan_refresh(settings, store, cache, full=full)
    split = split_of(cache.events, items, settings, plan.teaches(cache.events, settings))
    phases.end("examples_s")
    if not len(split.train) or not len(split.test):
        raise RuntimeError(
            f"too little data: {len(split.train)} training examples and {len(split.test)} test users "
            "(a test user needs two events and a new item among their newest)"
        )
    mconfig, tconfig = ModelConfig.from_settings(settings), train_config(settings)
    current_name = store.current()
    current = load_version(store, current_name, device) if current_name is not None else None
    if plan.kind == "warm":
        tconfig = replace(tconfig, epochs=min(tconfig.epochs, settings.train_warm_epochs), lr=settings.train_warm_lr)
    log.info(
        "%s refresh (%s) on %d examples (%d validation and %d test users held out), %d items, device %s",
        plan.kind,
        plan.reason,
        len(split.train),
        len(split.valid),
        len(split.test),
        len(items),
        device,
    )
    start = current.model if plan.kind == "warm" else None
    result = train(split, items, mconfig, tconfig, device, settings.affinity_half_life_s, on_progress, start)
    phases.end("train_s")
    half_life = settings.affinity_half_life_s
    neighbours = neighbours_of(split, items, settings.model_neighbours)
    weight, by_weight, weight_from = 0.0, {}, None
    if neighbours is not None and plan.kind == "warm" and current.neighbours is not None:
        # Small steps from the base's towers: the weight its validation users chose stands (saves 5 judgings).
        weight, weight_from = current.blend_weight, current.version
    elif neighbours is not None:
        weight, by_weight = choose_blend(result.model, neighbours, split.valid, items, mconfig, device, half_life)
        log.info("neighbours' weight %.2g (validation recall@20 by weight: %s)", weight, by_weight)
    phases.end("neighbours_s")
    test = judge_model(
        result.model, split.test, items, mconfig, device, half_life, neighbours=neighbours, weight=weight
    )
    popularity = judge_popularity(split.test, items, split.item_counts)

    current_recall = None
    if current is not None:
        current_recall = evaluate_version(current, split, items, settings).model.recall[GATE_K]
    new_recall = test.recall[GATE_K]
    passes = current_recall is None or new_recall >= current_recall - settings.train_gate_tolerance
    phases.end("judge_s")
    times = [e.ts for e in cache.events]
    manifest = Manifest(
        created=time.time(),
        device=device.type,
        metrics={
            "test": test.to_json(),
            "popularity": popularity.to_json(),
            "valid": result.valid.to_json(),
        },
        data_window=DataWindow(
            events=len(cache.events),
            first_ts=min(times),
            last_ts=max(times),
            items=len(items),
            train_examples=len(split.train),
            test_examples=len(split.test),
            offsets=cache.offsets,
        ),
        params={
            "train": asdict(tconfig),
            "model": mconfig.to_dict(),
            "blend": {
                "neighbours": settings.model_neighbours,
                "weight": weight,
                "valid_recall@20_by_weight": {str(w): round(r, 5) for w, r in by_weight.items()},
                "weight_from": weight_from,  # a warm refresh keeps its base's weight
            },
        },
        training={
            "kind": plan.kind,
            "why": plan.reason,
            "base": plan.base,
            "warm_in_a_row": plan.warm_in_a_row,
            "seconds": round(time.time() - started, 2),
            **phases.seconds,
            "epochs": len(result.history),
            "examples_per_s": round(result.examples_per_s, 1),
            "history": result.history,
        },
        gate={
            "k": GATE_K,
            "against": current_name,
            "current_recall": current_recall,
            "new_recall": new_recall,
            "passed": passes,
            "forced": force and not passes,
        },
    )
    item_popularity = np.array([split.item_counts.get(i.item_id, 0.0) for i in items], dtype=np.float32)
    version = publish_model(store, result.model, items, item_popularity, manifest, neighbours=neighbours, promote=False)
    if choose_index is not None:
        index = choose_index(version, latest_states(split, settings.tune_queries * 2))
        if index:
            store.record_index(version, index)
    outcome = RunOutcome(version, False, "", store.load_manifest(version))
    if passes or force:
        store.promote(version)
        outcome.promoted = True
        outcome.reason = (
            "forced past the gate"
            if not passes
            else (
                "first version"
                if current_name is None
                else f"recall@{GATE_K} {new_recall:.4f} vs current {current_recall:.4f}"
            )
        )
    else:
        outcome.reason = (
            f"kept {current_name}: new recall@{GATE_K} {new_recall:.4f} < current {current_recall:.4f} "
            f"(tolerance {settings.train_gate_tolerance})"
        )
    store.prune(settings.models_keep)
    return outcome


def announcement(store: ModelStore, version: str) -> dict:
    """The `recs.model-updates` value: which version, where, and how good."""
    manifest = store.load_manifest(version)
    return {
        "model": manifest.model,
        "version": version,
        "path": str(store.root / version),
        "created": manifest.created,
        f"recall@{GATE_K}": manifest.metric("test", f"recall@{GATE_K}"),
        f"popularity_recall@{GATE_K}": manifest.metric("popularity", f"recall@{GATE_K}"),
    }


async def announce(settings: Settings, bootstrap: str, store: ModelStore, version: str) -> None:
    """Tell workers and servers on `recs.model-updates` that `version` is current."""
    producer = await start_producer(bootstrap)
    try:
        await producer.send_and_wait(
            Topics.from_settings(settings).model_updates, encode(announcement(store, version)), key=MODEL_NAME.encode()
        )
    finally:
        await producer.stop()
