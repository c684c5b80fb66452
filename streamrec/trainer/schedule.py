"""`streamrec train`: once, or every so often while enough new events arrive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from streamrec.embeddings.versions import ModelVersion
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.trainer.announce import announce
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import catalog_of, open_cache, refresh_cache, split_of
from streamrec.trainer.eval_protocol import KS
from streamrec.trainer.evaluate import Evaluation, evaluate_version
from streamrec.trainer.job import IndexChooser, RunOutcome, train_and_publish
from streamrec.trainer.plan import cut_short_current, new_events_since_current

log = logging.getLogger(__name__)


async def train_once(
    settings: TrainerConfig,
    kafka: KafkaConnection,
    *,
    force: bool = False,
    full: bool = False,
    min_new_events: int = 0,
    on_progress: Callable[[dict], None] = lambda s: None,
    choose_index: IndexChooser | None = None,
    cache: InteractionCache | None = None,
) -> RunOutcome:
    """Read new events, train unless too few arrived (a first version cut
    short by its budget is refined whatever arrived), publish, announce.
    `cache`: the trainer's cache already in memory (else read from disk)."""
    store, cache = ModelStore.in_data_dir(settings.data_dir), cache or open_cache(settings)
    await refresh_cache(settings, kafka, cache)
    pending = new_events_since_current(store, cache)
    if pending < min_new_events and cut_short_current(store) is None:
        since = store.current() or "the start"
        return RunOutcome(reason=f"skipped: {pending} new events since {since}, fewer than {min_new_events}")
    # Training is CPU (or GPU) bound for minutes: off the event loop, so Ctrl-C is still heard.
    outcome = await asyncio.to_thread(
        train_and_publish,
        settings,
        cache,
        store,
        force=force,
        full=full,
        on_progress=on_progress,
        choose_index=choose_index,
    )
    if outcome.promoted:
        await announce(Topics.from_settings(settings.kafka), kafka, store, outcome.version)
    return outcome


async def train_every(
    settings: TrainerConfig,
    kafka: KafkaConnection,
    stop: asyncio.Event,
    every_s: float,
    *,
    min_new_events: int = 0,
    on_outcome: Callable[[RunOutcome], None] = lambda o: None,
    on_progress: Callable[[dict], None] = lambda s: None,
    choose_index: IndexChooser | None = None,
) -> None:
    """Run `train_once` every `every_s` seconds until `stop` (at once after a
    first version cut short by its budget, to refine it); a failed run is
    logged with its reason and leaves the current version in place. The cache
    stays in memory between runs (a refresh then reads only what is new from
    Kafka, not the whole window from disk); after a failure it is read again."""
    cache = None
    while not stop.is_set():
        try:
            cache = cache or open_cache(settings)
            outcome = await train_once(
                settings,
                kafka,
                min_new_events=min_new_events,
                on_progress=on_progress,
                choose_index=choose_index,
                cache=cache,
            )
            on_outcome(outcome)
            if outcome.promoted and cut_short_current(ModelStore.in_data_dir(settings.data_dir)):
                continue  # a first version cut short by its budget: its refinement starts at once
        except Exception as exc:  # noqa: BLE001 - the schedule outlives a bad run, and says why
            cache = None  # memory may be ahead of or behind the disk: start again from what was written
            log.error(
                "training run failed; current version %s kept: %s: %s",
                ModelStore.in_data_dir(settings.data_dir).current(),
                type(exc).__name__,
                exc,
            )
            on_outcome(RunOutcome(reason=f"failed: {type(exc).__name__}: {exc}"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


@dataclass(frozen=True)
class LogEvaluation:
    """A version judged on the held-out users of the trainer's whole log."""

    evaluation: Evaluation
    items: int
    events: int


async def evaluate_on_log(
    settings: TrainerConfig, kafka: KafkaConnection, version: ModelVersion, ks: tuple[int, ...] = KS
) -> LogEvaluation:
    """Bring the trainer's cache up to date and judge `version` (and popularity)
    on its held-out users' newest events, as the gate would."""
    cache = open_cache(settings)
    await refresh_cache(settings, kafka, cache)
    items = catalog_of(cache)
    split = split_of(cache.events, items, settings.features)
    evaluation = evaluate_version(version, split, items, settings.features.affinity_half_life_s, ks)
    return LogEvaluation(evaluation, len(items), len(cache.events))
