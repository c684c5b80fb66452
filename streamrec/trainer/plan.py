"""Whether a refresh starts from scratch ("full"), continues from the
current version's weights on new events ("warm") or on everything
("refine": the first version, cut short by its time budget, trained on),
and what it learns from."""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.embeddings.encoding import ModelConfig
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import TrainerSettings
from streamrec.foundation.store import ModelStore
from streamrec.trainer.cache import InteractionCache
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.examples import EventFilter, newer_and_sampled

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
    budget_s: float = 0.0  # the first version's towers' time budget (0: only STREAMREC_TRAIN_BUDGET_S)

    def teaches(self, events: list[Event], settings: TrainerSettings) -> EventFilter:
        if self.kind != "warm":
            return lambda event: True
        old = len(events) - self.new_events
        return newer_and_sampled(self.since_ts, settings.warm_replay, self.new_events, old, settings.seed)


def new_events_since_current(store: ModelStore, cache: InteractionCache) -> int:
    """Events newer than the current version's data window (all, before the first)."""
    current = store.current()
    if current is None:
        return len(cache.events)
    window = store.load_manifest(current).data_window
    last_ts = window.last_ts if window is not None else float("-inf")
    return sum(1 for e in cache.events if e.ts > last_ts)


def cut_short_current(store: ModelStore) -> str | None:
    """The current version if the first version's budget cut its towers
    short and no refresh has been tried since (its refinement is due)."""
    current, versions = store.current(), store.versions()
    if current is None or not versions or versions[-1] != current:
        return None
    return current if store.load_manifest(current).training.cut_short else None


def plan_refresh(settings: TrainerConfig, store: ModelStore, cache: InteractionCache, *, full: bool = False) -> Plan:
    current = store.current()
    if full:
        return Plan("full", "asked for")
    if current is None:
        return Plan("full", "first version", budget_s=settings.trainer.first_budget_s)
    if cut_short_current(store) is not None:
        return Plan("refine", f"{current}'s towers were cut short by the first version's budget", current)
    manifest = store.load_manifest(current)
    in_a_row = manifest.training.warm_in_a_row + 1
    if in_a_row >= settings.trainer.full_every:
        return Plan("full", f"every {settings.trainer.full_every}th refresh (STREAMREC_TRAIN_FULL_EVERY)")
    if ModelConfig.from_dict(manifest.model_config) != settings.model:
        return Plan("full", f"the model's shape differs from {current}'s")
    new = new_events_since_current(store, cache)  # all of them, for a version without a data window
    if not new:
        return Plan("full", f"no events after {current}'s data window")
    if new > WARM_MAX_NEW_SHARE * len(cache.events):
        return Plan("full", f"{new / len(cache.events):.0%} of the window is new: small steps would under-learn it")
    return Plan("warm", f"from {current}", current, manifest.data_window.last_ts, in_a_row, new)
