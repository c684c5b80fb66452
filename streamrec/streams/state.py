"""What a worker holds and answers, whichever engine runs its agents.

Both engines (`streamrec.streams.worker`, the batch engine, and `streamrec.streams.faust_engine`)
keep the same tables, fold with the same `Agents` and count the same
outcomes, so the HTTP port, the publisher and the tests read either alike.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streamrec.foundation.attribution import ArmCounts
from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.features import (
    FeatureConfig,
    ItemStats,
    UserFeatures,
    live_popularity,
    merge_item_stats,
    popular_items,
)
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Limits
from streamrec.foundation.settings import AccessSettings, KafkaSettings, Settings, WorkerSettings
from streamrec.foundation.topics import Topics
from streamrec.streams.agents import Agents, Outcome, Tables
from streamrec.streams.assignor import Owner
from streamrec.streams.metrics import WorkerMetrics
from streamrec.streams.tables import ChangelogTable

log = logging.getLogger(__name__)


@dataclass
class WorkerStatus:
    """Counters for the dashboard, the benchmark and /metrics."""

    events: int = 0
    items: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    reroutes: int = 0
    forgotten: int = 0
    commits: int = 0
    ready: bool = False


@dataclass(frozen=True)
class WorkerConfig:
    """What a stream worker reads of the settings: its own section and the
    shared ones it works with (topics, keys, bounds, the features' decay)."""

    worker: WorkerSettings
    kafka: KafkaSettings
    access: AccessSettings
    limits: Limits
    features: FeatureConfig
    data_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(
            settings.worker,
            settings.kafka,
            settings.access,
            Limits.from_settings(settings),
            FeatureConfig.from_settings(settings),
            settings.data_dir,
        )


class WorkerState(ABC):
    """The tables, the agents over them, the counters and the queries.

    What runs them subclasses this: a `StreamEngine` consumes, writes the
    changelogs and commits (and sets `_producer`, the process's aiokafka
    producer shared with the publisher); an app that `mount`s the agents runs
    them itself. Either sets `_ready` (event partitions restored and being
    processed) and answers who owns which partition.
    """

    def __init__(
        self,
        settings: WorkerConfig,
        kafka: KafkaConnection,
        *,
        catalog: CatalogView | None = None,
        metrics: WorkerMetrics | None = None,
    ):
        """`catalog`: a view to share with other parts of the process (it must
        not be started yet: the worker starts, polls and stops it)."""
        self.settings = settings
        self.kafka = kafka
        self.topics = Topics.from_settings(settings.kafka)
        limits = settings.limits
        self.config = settings.features
        self.users: ChangelogTable[UserFeatures] = ChangelogTable(
            "user-features", self.topics.user_features_changelog, UserFeatures.from_wire, UserFeatures.to_wire
        )
        self.items: ChangelogTable[ItemStats] = ChangelogTable(
            "item-stats", self.topics.item_stats_changelog, ItemStats.from_wire, ItemStats.to_wire
        )
        self.arms: ChangelogTable[ArmCounts] = ChangelogTable(
            "arm-counts", self.topics.arm_counts_changelog, ArmCounts.from_wire, ArmCounts.to_wire
        )
        self.catalog = catalog or CatalogView(self.topics.catalog, limits)
        self.pseudonyms = Pseudonyms.from_settings(settings.access)
        self.agents = Agents(
            Tables(self.users, self.items, self.arms), self.catalog, self.config, limits, self.pseudonyms
        )
        self.status = WorkerStatus()
        self.metrics = metrics or WorkerMetrics()
        self._producer: AIOKafkaProducer | None = None
        self._ready: set[int] = set()
        # Called after each batch with the users it changed (the real-time publisher).
        self.on_touched: Callable[[dict[str, tuple[int, str, float]], list[str]], None] | None = None

    # --- what the group tells: each runner answers from its own consumer -------

    @property
    @abstractmethod
    def owners(self) -> Mapping[int, Owner]:
        """Each event partition's owner in the group, as the last assignment said."""

    @abstractmethod
    def partition_count(self) -> int: ...

    @abstractmethod
    def lag(self) -> int:
        """Records in the assigned input partitions not yet processed."""

    # --- shared by the engines --------------------------------------------------

    def watch_users(self, on_touched: Callable[[dict[str, tuple[int, str, float]], list[str]], None]) -> None:
        """After each batch, `on_touched({user id: (partition, event id, event ts)}, [forgotten user id])`."""
        self.agents.touched = {}
        self.on_touched = on_touched

    def _hand_over_touched(self) -> None:
        agents = self.agents
        on_touched = self.on_touched
        if on_touched is not None and (agents.touched or agents.forgotten):
            touched, forgotten, agents.touched, agents.forgotten = agents.touched, agents.forgotten, {}, []
            on_touched(touched or {}, forgotten)

    @property
    def tables(self) -> tuple[ChangelogTable, ...]:
        """Every table, each partitioned as the events and backed by its changelog."""
        return (self.users, self.items, self.arms)

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "start() the worker first"
        return self._producer

    def _count(self, outcome: Outcome) -> None:
        status = self.status
        status.events += outcome.events
        status.items += outcome.items
        status.duplicates += outcome.duplicates
        status.dead_letters += len(outcome.dead_letters)
        status.reroutes += len(outcome.reroutes)
        status.forgotten += len(outcome.forgotten)
        status.commits += 1
        self.metrics.count(outcome)
        if outcome.dead_letters:
            # A reason may quote a field of the record: reasons (and so ids) only at DEBUG.
            log.info("%d records dead-lettered to %s", len(outcome.dead_letters), self.topics.deadletter)
            for reason in {d.reason for d in outcome.dead_letters}:
                log.debug("dead letter: %s", reason)

    # --- queries --------------------------------------------------------------

    def sample_users(self, n: int) -> list[UserFeatures]:
        """Up to `n` of this worker's users, copied: the tuner reads them in a
        thread while the worker goes on changing its own rows."""
        rows = [user for _, _, user in self.users.items()]
        return [UserFeatures.from_wire(user.to_wire()) for user in random.sample(rows, min(n, len(rows)))]

    def item_stats(self, item_id: str) -> ItemStats | None:
        """One item's statistics over the partitions this worker owns."""
        parts = [stats for _, key, stats in self.items.items() if key == item_id]
        return merge_item_stats(parts) if parts else None

    def popular_items(self, k: int, now: float | None = None) -> list[tuple[str, float]]:
        """The `k` items most interacted with in the popularity window, as this
        worker counted them. `now` defaults to the newest event counted (event
        time: a replayed log keeps its own clock)."""
        stats = [stats for _, _, stats in self.items.items()]
        if now is None:
            now = max((s.last_ts for s in stats), default=0.0)
        return popular_items(stats, k, now, self.config)

    def live_popularity(self) -> dict[str, float]:
        """Each item's score in the popularity window before the newest event
        this worker counted: what the model-free answers rank by."""
        return live_popularity((stats for _, _, stats in self.items.items()), self.config)

    @property
    def ready_partitions(self) -> frozenset[int]:
        """Event partitions whose state is restored and which are being processed."""
        return frozenset(self._ready)


class StreamEngine(WorkerState):
    """A worker process's engine (`STREAMREC_ENGINE`): it joins the group,
    processes, and commits behind the changelog."""

    @abstractmethod
    async def start(self) -> None:
        """Join the group (topics are created first where missing)."""

    @abstractmethod
    async def run(self) -> None:
        """Process until `stop()`; raises what stopped it otherwise."""

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Write and commit what was processed, then leave the group."""

    @abstractmethod
    async def abort(self) -> None:
        """Leave without committing: what a killed process leaves behind
        (the group redelivers; fault tests use it)."""
