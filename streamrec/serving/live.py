"""The live side of serving: the current index, swapped when a version is
announced, and the placements' rules, changed when one is written.

`LiveModel.current` is one reference. A request reads it once and finishes on
that index even if a swap happens meanwhile; a swap builds the new index in a
thread and replaces the reference in one assignment, so no request ever sees
a half-built index or fails because of a swap.

User features come from a replica of the workers' user-features changelog
(every partition, no group): the workers flush it every `commit_interval_s`,
so serving is at most about that far behind an event, and a request costs no
hop to a worker. The price is memory: each server holds every user's
compact (changelog) bytes, decoded only when asked for.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamrec.embeddings.versions import load_version
from streamrec.foundation.attribution import Arm
from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.codec import decode
from streamrec.foundation.experiments import Experiment
from streamrec.foundation.features import FeatureConfig, ItemStats, UserFeatures, live_popularity
from streamrec.foundation.http import Access
from streamrec.foundation.kafka import FollowedTopic, KafkaConnection, PartitionRows
from streamrec.foundation.placement_book import DEFAULT_PLACEMENT, PlacementBook
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Limits, show
from streamrec.foundation.settings import AccessSettings, ApiSettings, KafkaSettings, Settings, TuneSettings
from streamrec.foundation.store import ModelStore, is_version_name
from streamrec.foundation.topics import Topics
from streamrec.index.kinds import IndexSpec
from streamrec.index.tune import best_spec
from streamrec.serving.arms import AnswerCounts, ArmCountsReplica, Plan
from streamrec.serving.serving_index import ServingConfig, ServingIndex

log = logging.getLogger(__name__)

POLL_S = 0.05  # catalog, features and announcements are polled this often
POPULARITY_EVERY_S = 5.0  # live popularity is recomputed for cold-start answers this often
SWAP_BACKOFF_S = 5.0  # after a failed swap, the same version is tried again this much later, then twice that ...
MAX_SWAP_BACKOFF_S = 300.0


class FeatureReplica(FollowedTopic):
    """Every user's latest features, from the user-features changelog."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self._rows: dict[str, bytes] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self._rows.pop(key.decode(errors="replace"), None)
        else:
            self._rows[key.decode(errors="replace")] = value

    def get(self, user_id: str) -> UserFeatures | None:
        raw = self._rows.get(user_id)
        return None if raw is None else UserFeatures.from_wire(decode(raw))

    def sample(self, n: int, seed: int = 0) -> list[UserFeatures]:
        """Up to `n` users picked at random, decoded (the tuner's queries)."""
        picked = random.Random(seed).sample(list(self._rows), min(n, len(self._rows)))
        return [UserFeatures.from_wire(decode(self._rows[user_id])) for user_id in picked]

    def __len__(self) -> int:
        return len(self._rows)


class ItemStatsReplica(PartitionRows[ItemStats]):
    """Every partition's item statistics, from the item-stats changelog: the
    live popularity that cold-start answers rank by."""

    def __init__(self, topic: str, config: FeatureConfig):
        super().__init__(topic, "item-stats", lambda value: ItemStats.from_wire(decode(value)))
        self.config = config

    def events_counted(self) -> int:
        """Every event the workers have counted, summed over items and partitions."""
        return sum(part.clicks + part.purchases for part in self.rows.values())

    def popularity(self) -> dict[str, float]:
        """Each item's interactions in the popularity window before the newest
        event counted (event time), summed over partitions."""
        return live_popularity(self.rows.values(), self.config)


class Announcements(FollowedTopic):
    """Versions announced on `recs.model-updates`, newest last.

    Anyone who can write the topic can announce: only a well-formed version
    name is kept, and the live model swaps only to the store's current
    version (`LiveModel.version_to_serve`), so a message can trigger a check,
    never choose a path."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.latest: str | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            version = decode(value)["version"] if value is not None else None
        except Exception as exc:  # noqa: BLE001 - a bad announcement must not stop serving
            log.warning("ignoring an unreadable model announcement: %s: %s", type(exc).__name__, str(exc)[:200])
            return
        if not is_version_name(version):
            log.warning("ignoring a model announcement with a malformed version %s", show(version))
            return
        self.latest = version


@dataclass(frozen=True)
class LiveConfig:
    """What a served version reads of the settings (the API's and the
    console's too): the index, the answers' defaults and the shared sections."""

    spec: IndexSpec  # the index built when the trainer chose none
    serving: ServingConfig
    tune: TuneSettings
    api: ApiSettings
    kafka: KafkaSettings
    access: AccessSettings
    limits: Limits
    features: FeatureConfig
    data_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveConfig:
        return cls(
            settings.section(IndexSpec, "index_"),
            settings.section(ServingConfig),
            settings.tune,
            settings.api,
            settings.kafka,
            settings.access,
            Limits.from_settings(settings),
            FeatureConfig.from_settings(settings),
            settings.data_dir,
        )


class LiveModel:
    """The current ServingIndex, its catalog and its users, kept fresh."""

    def __init__(
        self,
        settings: LiveConfig,
        *,
        sample_users: Callable[[int], list[UserFeatures]] | None = None,
        catalog: CatalogView | None = None,
    ):
        """`sample_users(n)`: when the caller holds the features (a worker's
        publisher), where the tuner's users come from; by default the features
        are a replica of the changelog, followed here. `catalog`: a view the
        caller already reads (a worker's, tracking changes); by default one
        is followed here."""
        topics = Topics.from_settings(settings.kafka)
        self.settings = settings
        self.spec = settings.spec
        self.store = ModelStore.in_data_dir(settings.data_dir)
        self.follow_catalog = catalog is None
        self.catalog = catalog or CatalogView(topics.catalog, settings.limits, track_changes=True)
        self.features = FeatureReplica(topics.user_features_changelog)
        self.item_stats = ItemStatsReplica(topics.item_stats_changelog, settings.features)
        self.follow_features = sample_users is None  # a server; a worker's publisher has its own tables
        self.sample_users = sample_users or self.features.sample
        self.announcements = Announcements(topics.model_updates)
        access = Access.from_settings(settings.access)
        self.rules = PlacementBook(topics.rules, "rule", Rule, functools.partial(access.signed, "rule"))
        self.experiments = PlacementBook(
            topics.experiments, "experiment", Experiment, functools.partial(access.signed, "experiment")
        )
        self.arm_counts = ArmCountsReplica(topics.arm_counts_changelog)
        self.answers = AnswerCounts()
        self.current: ServingIndex | None = None
        self.swaps = 0
        self._building: str | None = None
        self._pending: list = []  # catalog changes that arrived while an index was building
        self._popularity_due = 0.0  # when live popularity is next pushed to the served index
        self._failed: dict[str, tuple[float, float]] = {}  # version -> (retry at, backoff) after a failed swap

    async def start(self, kafka: KafkaConnection) -> None:
        await asyncio.gather(*(topic.start(kafka) for topic in self._followed()))
        self.catalog.drain_changes()
        version = self.store.current()
        if version is not None:
            await self.swap_to(version)
        else:
            log.warning("no model version yet in %s: serving starts when one is announced", self.store.root)

    async def swap_to(self, version: str) -> bool:
        """Build `version`'s index off the event loop, then switch to it."""
        if self.current is not None and self.current.version.version == version or self._building == version:
            return False
        self._building = version
        try:
            snapshot = list(self.catalog.items.values())
            chosen = self.store.load_manifest(version).index  # the trainer's choice: nothing to measure here
            tuning = self.settings.tune.index_tune and not chosen
            users = self.sample_users(2 * self.settings.tune.queries) if tuning else []
            self._pending = []
            started = time.perf_counter()
            built = await asyncio.to_thread(self._build, version, snapshot, users)
            built.sync(self._pending)
            self._pending = []
            self.current = built
            # An index holds millions of long-lived objects (ids, words, rows):
            # moved out of the collector's sight, a full collection no longer
            # walks them all, which was a p99 of hundreds of milliseconds.
            gc.unfreeze()  # the previous index's objects can go now
            gc.collect()
            gc.freeze()
            self.swaps += 1
            self._failed.pop(version, None)
            self._popularity_due = 0.0  # the new index gets live popularity at the next poll
            log.info(
                "now serving model %s (%d items, swap took %.1f s)",
                version,
                built.index.ntotal,
                time.perf_counter() - started,
            )
            return True
        except Exception as exc:  # noqa: BLE001 - whatever breaks a build, the served index stays
            _, backoff = self._failed.get(version, (0.0, SWAP_BACKOFF_S / 2))
            backoff = min(2 * backoff, MAX_SWAP_BACKOFF_S)
            self._failed[version] = (time.monotonic() + backoff, backoff)
            log.error(
                "could not load model %s (next try in %.0f s); still serving %s: %s",
                version,
                backoff,
                self.version or "nothing",
                exc,
            )
            return False
        finally:
            self._building = None

    def _build(self, version: str, catalog: list, users: list[UserFeatures]) -> ServingIndex:
        """The version's index: as its manifest says (tuned by the trainer), or
        tuned here when asked and the trainer did not, or as configured."""
        loaded = load_version(self.store, version)
        if loaded.manifest.index:
            spec = IndexSpec.from_dict(loaded.manifest.index)
        elif self.settings.tune.index_tune:
            spec = best_spec(loaded, users, self.settings.tune) or self.spec
        else:
            spec = self.spec
        threads = self.settings.tune.index_threads or None
        return ServingIndex(loaded, spec, catalog, self.settings.serving, threads=threads)

    @property
    def version(self) -> str | None:
        return None if self.current is None else self.current.version.version

    def rule(self, placement: str | None) -> Rule | None:
        """The rule of `placement` (of the default placement when None); None where it has none."""
        return self.rules.get(placement or DEFAULT_PLACEMENT)

    def plan(self, placement: str | None, user_id: str | None) -> Plan:
        """How to answer `user_id` at `placement` (the default one when None):
        under the placement's experiment's variant for the user where it has
        one and a user asks, else under the placement's own rule."""
        placement = placement or DEFAULT_PLACEMENT
        if user_id is None or (experiment := self.experiments.get(placement)) is None:
            return Plan(Arm(placement), self.rules.get(placement))
        variant = experiment.variant_for(user_id)
        rule = self.rules.get(variant.rule_placement or placement)
        return Plan(experiment.arm(placement, variant), rule, variant.diversity)

    async def follow(self, stop: asyncio.Event) -> None:
        """Poll catalog, features and announcements until `stop`."""
        while not stop.is_set():
            if self.follow_catalog:
                await self.catalog.poll()
            changes = self.catalog.drain_changes()
            if changes:
                if self._building is not None:
                    self._pending.extend(changes)
                if self.current is not None:
                    self.current.sync(changes)
            if self.follow_features:
                await self.features.poll()
                await self.item_stats.poll()
                await self.arm_counts.poll()
                if time.monotonic() >= self._popularity_due and self.current is not None:
                    self.current.set_popularity(self.item_stats.popularity())
                    self._popularity_due = time.monotonic() + POPULARITY_EVERY_S
            await self.announcements.poll()
            await self.rules.poll()
            await self.experiments.poll()
            version = self.version_to_serve(time.monotonic())
            if version is not None:
                asyncio.create_task(self.swap_to(version))
            await asyncio.sleep(POLL_S)

    def version_to_serve(self, now: float) -> str | None:
        """The announced version to swap to now, if any: it must be the store's
        current version (an announcement is a hint, the store is the truth),
        not the one served or being built, and not within its backoff after a
        failed swap."""
        latest = self.announcements.latest
        if latest is None or latest == self.version or self._building is not None:
            return None
        retry_at, _ = self._failed.get(latest, (0.0, 0.0))
        if now < retry_at:
            return None
        if latest != self.store.current():
            log.warning("ignoring announced model %s: the store's current version is %s", latest, self.store.current())
            self.announcements.latest = None
            return None
        return latest

    async def stop(self) -> None:
        for topic in self._followed():
            await topic.stop()

    def _followed(self) -> list[FollowedTopic]:
        followed: list[FollowedTopic] = [self.announcements, self.rules, self.experiments]
        if self.follow_catalog:
            followed.append(self.catalog)
        if self.follow_features:
            followed.extend([self.features, self.item_stats, self.arm_counts])
        return followed
