"""One refresh: plan, train, blend, judge, gate, publish, tune, promote.

The gate compares the new model and the current one on the *same* held-out
users' windows (the newest split, by `streamrec.trainer.eval_protocol`), so "not worse"
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

from streamrec.embeddings.device import pick_device
from streamrec.embeddings.neighbours import Neighbours
from streamrec.embeddings.versions import ModelVersion, load_version, publish_model
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import TrainerSettings
from streamrec.foundation.store import Blend, DataWindow, Gate, Manifest, ModelStore, Params, Training
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import bought_together_of, catalog_of, latest_states, neighbours_of, split_of
from streamrec.trainer.eval_protocol import Quality
from streamrec.trainer.evaluate import choose_blend, evaluate_version, judge_model, judge_popularity
from streamrec.trainer.examples import Split
from streamrec.trainer.gate import GATE_K, decide_gate, promotes
from streamrec.trainer.plan import Plan, plan_refresh
from streamrec.trainer.train import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

IndexChooser = Callable[[str, list[UserFeatures]], dict | None]  # (version, users) -> the manifest's `index`


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


@dataclass
class _Refresh:
    """What one run has so far: its inputs, then each step's result."""

    settings: TrainerConfig
    cache: InteractionCache
    store: ModelStore
    device: torch.device
    items: list[Item]
    plan: Plan
    split: Split
    current: ModelVersion | None
    phases: Phases


def train_and_publish(
    settings: TrainerConfig,
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
    started = time.time()
    run = _prepare(settings, cache, store, device or pick_device(), full)
    result, tconfig = _train(run, on_progress)
    blend, neighbours = _choose_blend(run, result)
    run.phases.end("neighbours_s")
    test, popularity = _judge_new(run, result, neighbours, blend)
    gate, reason = _judge_gate(run, test.recall[GATE_K], force)
    run.phases.end("judge_s")
    training = Training(
        run.plan.kind,
        run.plan.reason,
        run.plan.base,
        run.plan.warm_in_a_row,
        round(time.time() - started, 2),
        **run.phases.seconds,
        epochs=len(result.history),
        cut_short=_refinement_due(run, result),
        examples_per_s=round(result.examples_per_s, 1),
        history=result.history,
    )
    params = Params(asdict(tconfig), settings.model.to_dict(), blend)
    manifest = _manifest(run, {"test": test, "popularity": popularity, "valid": result.valid}, params, training, gate)
    version = _publish(run, result, neighbours, manifest, choose_index)
    if promotes(gate):
        store.promote(version)
    store.prune(settings.trainer.models_keep)
    return RunOutcome(version, promotes(gate), reason, store.load_manifest(version))


def _prepare(
    settings: TrainerConfig, cache: InteractionCache, store: ModelStore, device: torch.device, full: bool
) -> _Refresh:
    """The plan, the catalog, the examples and the current version, or why there is too little to learn."""
    phases = Phases()
    if not cache.events:
        raise RuntimeError("no events to learn from: the event topics are empty")
    items = catalog_of(cache)
    plan = plan_refresh(settings, store, cache, full=full)
    split = split_of(cache.events, items, settings.features, plan.teaches(cache.events, settings.trainer))
    phases.end("examples_s")
    if not len(split.train) or not len(split.test):
        raise RuntimeError(
            f"too little data: {len(split.train)} training examples and {len(split.test)} test users "
            "(a test user needs two events and a new item among their newest)"
        )
    current_name = store.current()
    current = load_version(store, current_name, device) if current_name is not None else None
    return _Refresh(settings, cache, store, device, items, plan, split, current, phases)


def _train(run: _Refresh, on_progress: Callable[[dict], None]) -> tuple[TrainResult, TrainConfig]:
    """The towers, from scratch or (warm) from the current version's weights in small steps."""
    settings, plan, split = run.settings, run.plan, run.split
    tconfig, window = settings.train, settings.trainer
    if plan.kind == "warm":
        tconfig = replace(tconfig, epochs=min(tconfig.epochs, window.warm_epochs), lr=window.warm_lr)
    if plan.budget_s > 0:
        tconfig = replace(tconfig, budget_s=min(tconfig.budget_s or plan.budget_s, plan.budget_s))
    log.info(
        "%s refresh (%s) on %d examples (%d validation and %d test users held out), %d items, device %s",
        plan.kind,
        plan.reason,
        len(split.train),
        len(split.valid),
        len(split.test),
        len(run.items),
        run.device,
    )
    start = run.current.model if plan.kind in ("warm", "refine") else None
    result = train(
        split,
        run.items,
        settings.model,
        tconfig,
        run.device,
        settings.features.affinity_half_life_s,
        on_progress,
        start,
    )
    run.phases.end("train_s")
    return result, tconfig


EASE_REGULARISATIONS = (100.0, 300.0, 1000.0)  # EASE's lambdas tried on the validation users


def neighbour_sources(settings: TrainerSettings, items: int) -> list[float | None]:
    """The neighbours a full refresh tries: co-occurrence (None), and EASE at
    each lambda where the catalog is small enough for its dense inverse."""
    fits = 0 < items <= settings.model_ease_max_items
    return [None, *(EASE_REGULARISATIONS if fits else ())]


def _refinement_due(run: _Refresh, result: TrainResult) -> bool:
    """Whether the first version's budget (not `STREAMREC_TRAIN_BUDGET_S`, which bounds every refresh) cut the
    towers short: the next refresh refines them."""
    return result.cut_short and run.plan.budget_s > 0


TRANSITIONS = 0.5  # the next-click weights' share beside EASE's, tried at EASE's best lambda


def _choose_blend(run: _Refresh, result: TrainResult) -> tuple[Blend, Neighbours | None]:
    """The neighbours' kind and weight with the best recall on the validation
    users (every kind; one for a first version to be refined next), or
    (warm) the base's kind and weight."""
    settings, count = run.settings, run.settings.trainer.model_neighbours
    base = run.current.manifest.params.blend if run.current is not None else None
    if count <= 0:
        return Blend(count), None
    sources = neighbour_sources(settings.trainer, len(run.items))
    if run.plan.kind == "warm" and run.current.neighbours is not None:
        # Small steps from the base's towers: the choice its validation users made stands (saves the judgings),
        # on co-occurrence if the catalog outgrew EASE.
        ease = base.regularisation if base.regularisation in sources else None
        transitions = base.transitions if ease is not None else 0.0
        blend = replace(
            base, neighbours=count, weight_from=run.current.version, regularisation=ease, transitions=transitions
        )
        return blend, neighbours_of(run.split, run.items, count, ease, transitions, base.co_occurrence)
    hurried = _refinement_due(run, result)  # one kind, EASE's middle lambda where it fits
    if hurried:
        sources = [sources[len(sources) // 2]]
    kinds = [Blend(count, regularisation=ease) for ease in sources]
    if not hurried:
        kinds.append(Blend(count, co_occurrence="rp3beta"))
    tried = [_judge_kind(run, result, kind) for kind in kinds]
    best_ease = max(tried, key=lambda t: t[0])[1].regularisation
    if best_ease is not None and not hurried:  # what comes next, beside what goes together
        tried.append(_judge_kind(run, result, Blend(count, regularisation=best_ease, transitions=TRANSITIONS)))
    _, blend, neighbours = max(tried, key=lambda t: t[0])
    blend = replace(blend, valid_recall_by_source={b.source_name: round(r, 5) for r, b, _ in tried})
    log.info(
        "neighbours: %s at weight %.2g, recency half-life %g (validation recall@20 by source: %s)",
        blend.source_name,
        blend.weight,
        blend.recency_half_life,
        blend.valid_recall_by_source,
    )
    return blend, neighbours


def _judge_kind(run: _Refresh, result: TrainResult, kind: Blend) -> tuple[float, Blend, Neighbours | None]:
    """One kind of neighbours (a blend without its mix) at its best mix on the
    validation users: (recall@20, the blend, the neighbours)."""
    neighbours = neighbours_of(
        run.split, run.items, kind.neighbours, kind.regularisation, kind.transitions, kind.co_occurrence
    )
    mix, recalls = choose_blend(
        result.model,
        neighbours,
        run.split.valid,
        run.items,
        run.settings.model,
        run.device,
        run.settings.features.affinity_half_life_s,
    )
    return recalls[mix], _with_mix(kind, mix, recalls), neighbours


def _with_mix(kind: Blend, mix: tuple[float, float], recalls: dict) -> Blend:
    """The kind at its chosen mix, with the evidence: recall by weight and by half-life, each at its best other half."""
    by_weight: dict[str, float] = {}
    by_half_life: dict[str, float] = {}
    for (weight, half_life), recall in recalls.items():
        by_weight[str(weight)] = max(by_weight.get(str(weight), 0.0), round(recall, 5))
        if weight > 0:
            by_half_life[str(half_life)] = max(by_half_life.get(str(half_life), 0.0), round(recall, 5))
    return replace(
        kind,
        weight=mix[0],
        recency_half_life=mix[1],
        valid_recall_by_weight=by_weight,
        valid_recall_by_half_life=by_half_life,
    )


def _judge_new(
    run: _Refresh, result: TrainResult, neighbours: Neighbours | None, blend: Blend
) -> tuple[Quality, Quality]:
    """The new model as it will be served, and popularity, on the test users."""
    test = judge_model(
        result.model,
        run.split.test,
        run.items,
        run.settings.model,
        run.device,
        run.settings.features.affinity_half_life_s,
        neighbours=neighbours,
        mix=(blend.weight, blend.recency_half_life),
    )
    return test, judge_popularity(run.split.test, run.items, run.split.item_counts)


def _judge_gate(run: _Refresh, new_recall: float, force: bool) -> tuple[Gate, str]:
    """The current version judged on the same test users, and the gate's decision."""
    current_recall = None
    if run.current is not None:
        half_life = run.settings.features.affinity_half_life_s
        current_recall = evaluate_version(run.current, run.split, run.items, half_life).model.recall[GATE_K]
    current_name = run.current.version if run.current is not None else None
    return decide_gate(
        new_recall, current_name, current_recall, tolerance=run.settings.trainer.gate_tolerance, force=force
    )


def _manifest(run: _Refresh, qualities: dict[str, Quality], params: Params, training: Training, gate: Gate) -> Manifest:
    times = [e.ts for e in run.cache.events]
    window = DataWindow(
        events=len(run.cache.events),
        first_ts=min(times),
        last_ts=max(times),
        items=len(run.items),
        train_examples=len(run.split.train),
        test_examples=len(run.split.test),
        offsets=run.cache.offsets,
    )
    metrics = {name: quality.to_json() for name, quality in qualities.items()}
    return Manifest(
        created=time.time(),
        device=run.device.type,
        metrics=metrics,
        data_window=window,
        params=params,
        training=training,
        gate=gate,
    )


def _publish(
    run: _Refresh,
    result: TrainResult,
    neighbours: Neighbours | None,
    manifest: Manifest,
    choose_index: IndexChooser | None,
) -> str:
    """Write the version (not yet current) and, when asked, the index its servers will build."""
    popularity = np.array([run.split.item_counts.get(i.item_id, 0.0) for i in run.items], dtype=np.float32)
    version = publish_model(
        run.store,
        result.model,
        run.items,
        popularity,
        manifest,
        neighbours=neighbours,
        bought_together=bought_together_of(run.cache.events, run.items),
        promote=False,
    )
    if choose_index is not None:
        index = choose_index(version, latest_states(run.split, run.settings.trainer.tune_queries * 2))
        if index:
            run.store.record_index(version, index)
    return version
