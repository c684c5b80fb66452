"""The faust engine (`STREAMREC_ENGINE=faust`): the agents and tables on a
faust-streaming app.

Faust runs the consumer group, one agent per input topic, the tables'
changelogs and their recovery after a rebalance; each agent takes a batch of
events (`take_events`) and folds it with the batch engine's `Agents`. The
tables' store keeps the batch engine's rows (a row per key and partition: an
item's statistics from two event partitions stay two rows), and before each
of Faust's commits a row changed since the last is written once, key and
value encoded as the batch engine writes them, so that the trainer, the
servers and the publisher read either engine's changelogs alike.

Teams with a Faust app of their own call `mount(app, settings)`. What this
engine cannot guarantee that the batch engine does: docs/engines.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

import faust
from aiokafka import TopicPartition
from faust.stores.memory import Store
from faust.types import TP

from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.http import Access
from streamrec.foundation.kafka import KafkaConnection, end_offsets, start_producer
from streamrec.foundation.settings import Settings, SettingsError
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.streams import faust_compat
from streamrec.streams.agents import Outcome
from streamrec.streams.assignor import Owner
from streamrec.streams.metrics import WorkerMetrics
from streamrec.streams.state import StreamEngine, WorkerConfig, WorkerState
from streamrec.streams.tables import ChangelogTable, flush

log = logging.getLogger(__name__)

RAW = {"key_serializer": "raw", "value_serializer": "raw"}
CLOSE_TIMEOUT_S = 30.0  # for the agents to finish the events they hold
# An agent's batch is what arrived within this time: an event waits at most
# this long to be folded (0.5 s made the demo's event-to-recommendation p50
# 0.7 s; events/s were the same at 0.05 s and 0.5 s).
TAKE_WITHIN_S = 0.05


class RowsStore(Store):
    """A Faust table store over `ChangelogTable`: restores fill the rows by partition."""

    logger = logging.getLogger("faust.stores")

    def __init__(self, *args, rows: ChangelogTable, **kwargs):
        self.rows = rows
        super().__init__(*args, **kwargs)

    def apply_changelog_batch(self, batch: Iterable, to_key: Callable, to_value: Callable) -> None:
        load = self.rows.load
        for event in batch:
            message = event.message
            if message.key is not None:
                load(message.partition, message.key, message.value)

    async def on_recovery_completed(self, active_tps: set, standby_tps: set) -> None:
        self.rows.hold({tp.partition for tp in active_tps})


class RowsTable(faust_compat.StoreTable):
    """A Faust table whose rows are a `ChangelogTable` and whose changelog
    records are the batch engine's (key: the id's UTF-8; value: msgpack)."""

    logger = logging.getLogger("faust.tables")

    def __init__(self, app: faust.App, *, rows: ChangelogTable, on_ready: Callable[[set[int]], None], **kwargs):
        self.rows = rows
        self.on_ready = on_ready
        super().__init__(
            app,
            name=rows.name,
            changelog_topic=app.topic(rows.changelog, **RAW),
            schema=faust.Schema(**RAW),
            recovery_buffer_size=10_000,
            **kwargs,
        )

    def make_store(self) -> RowsStore:
        return RowsStore("memory://", self.app, self, table_name=self.name, rows=self.rows)

    async def on_recovery_completed(self, active_tps: set, standby_tps: set) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        self.on_ready({tp.partition for tp in active_tps})


class FaustAgents(WorkerState):
    """streamrec's agents and tables on a Faust app (see `mount`)."""

    def __init__(
        self,
        app: faust.App,
        settings: WorkerConfig,
        *,
        kafka: KafkaConnection | None = None,
        catalog: CatalogView | None = None,
        metrics: WorkerMetrics | None = None,
    ):
        """`kafka`: how streamrec's own clients (the catalog view) reach the
        brokers; by default the app's brokers, plain (a mounted app keeps its credentials)."""
        kafka = kafka or KafkaConnection(",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker))
        super().__init__(settings, kafka, catalog=catalog, metrics=metrics)
        self.app = app
        topics = self.topics
        for table in self.tables:  # the users' table says when a partition is ready: it restores first
            on_ready = self._on_ready if table is self.users else lambda _: None
            app.tables.add(RowsTable(app, rows=table, on_ready=on_ready, partitions=settings.kafka.partitions))
        # Where a batch's outcome goes: dead letters, forget tombstones, re-routed events and control records.
        outputs = (topics.deadletter, topics.recommendations, *topics.events, topics.control)
        self._out = {name: app.topic(name, **RAW) for name in outputs}
        self._started: asyncio.Future | None = None  # the first batch's setup
        self._folded: dict[TP, int] = {}  # the offset after the newest event folded, by partition (`close`)
        for topic in topics.events:
            self._agent(topic, self.agents.on_events)
        self._agent(topics.control, self.agents.on_control)
        self._agent(topics.catalog, self.agents.on_catalog)
        app.on_partitions_revoked.connect(self._on_revoked)

    def _agent(self, topic: str, fold: Callable[[str, int, list, Outcome], None]) -> None:
        batch, within = self.settings.worker.max_batch_events, TAKE_WITHIN_S

        async def agent(stream: faust.Stream) -> None:
            async for events in stream.take_events(batch, within):
                await self._before_batch()
                self._fold(events, fold)

        self.app.agent(self.app.topic(topic, **RAW), name=f"streamrec.{topic}")(agent)

    async def _before_batch(self) -> None:
        """The first batch reads the catalog view to its end and guards the
        commits; every batch polls the catalog (the batch engine does both in its loop)."""
        if self._started is None:
            self._guard_commits()
            self._started = asyncio.ensure_future(self.catalog.start(self.kafka))
        await asyncio.shield(self._started)
        await self.catalog.poll()

    def _guard_commits(self) -> None:
        """Flush, then commit, as the batch engine: before Faust commits
        offsets, every row changed since the last commit is written once to
        its changelog and acknowledged. A failed write fails the commit and
        crashes the app, so the group redelivers those events. A commit the
        group refused is not taken as done."""
        faust_compat.commit_after(self.app.consumer, lambda writer: flush(writer, *self.tables))
        faust_compat.forget_refused_commits(self.app.consumer)

    def _fold(self, events: list, fold: Callable[[str, int, list, Outcome], None]) -> None:
        by_partition: dict[tuple[str, int], list] = {}
        for event in events:
            message = event.message
            by_partition.setdefault((message.topic, message.partition), []).append(message)
        outcome, folded = Outcome(), self._folded
        for (topic, partition), messages in by_partition.items():
            fold(topic, partition, messages, outcome)
            newest = messages[-1]  # a partition's events arrive in order
            folded[newest.tp] = max(folded.get(newest.tp, 0), newest.offset + 1)
        self._send(outcome)
        self._count(outcome)
        self._hand_over_touched()

    def _send(self, outcome: Outcome) -> None:
        """What a batch produced besides its rows, sent before Faust acks the
        batch's events (its producer is flushed before their commit)."""
        deadletter, recommendations = self._out[self.topics.deadletter], self._out[self.topics.recommendations]
        keep_payload = self.settings.worker.deadletter_payload
        for dead in outcome.dead_letters:
            deadletter.send_soon(
                key=dead.key if keep_payload else None,
                value=dead.payload() if keep_payload else None,
                headers=dead.headers(),
            )
        for user_id in outcome.forgotten:
            recommendations.send_soon(key=user_id.encode(), value=None)
        for reroute in outcome.reroutes:
            self._out[reroute.topic].send_soon(key=reroute.key, value=reroute.value)

    def _on_ready(self, partitions: set[int]) -> None:
        self.agents.partitions = self.partition_count()
        self._ready = set(partitions)
        self.metrics.partitions.set(len(partitions))
        self.status.ready = True

    async def _on_revoked(self, app: faust.App, revoked: set, **_) -> None:
        self._ready -= {tp.partition for tp in revoked}
        for tp in revoked:
            self._folded.pop(tp, None)

    # --- what the HTTP port asks ------------------------------------------------

    @property
    def owners(self) -> Mapping[int, Owner]:
        """From Faust's assignor: the owner of each partition of the features
        table. A member's canonical URL carries its signature as its path."""
        owners: dict[int, Owner] = {}
        for url, topics in self.app.assignor.table_metadata(self.topics.user_features_changelog).items():
            owner = Owner.from_canonical_url(url)
            for partition in topics.get(self.topics.user_features_changelog, ()):
                owners[partition] = owner
        return owners

    def partition_count(self) -> int:
        return self.app.consumer.topic_partitions(self.topics.clicks) or self.settings.kafka.partitions

    def lag(self) -> int:
        consumer = self.app.consumer
        inputs = {*self.topics.events, self.topics.control}
        total = 0
        for tp in consumer.assignment():
            highwater, read = consumer.highwater(tp), faust_compat.read_offset(consumer, tp)
            if tp.topic in inputs and highwater is not None and read is not None:
                total += max(0, highwater - read - 1)
        return total


def mount(
    app: faust.App, settings: Settings, *, catalog: CatalogView | None = None, metrics: WorkerMetrics | None = None
) -> FaustAgents:
    """Add streamrec's agents and tables to a Faust app of your own.

    Call it before the app starts. The app must have no standby replicas
    (`table_standby_replicas=0`): the tables' rows are the partitions this
    member owns, as the HTTP port and the publisher expect. Returns the
    agents' state: `users` and `items` (rows by partition), `status`,
    `metrics` and the worker's queries. Its changelogs, dead letters and
    re-routed events are the batch engine's, so streamrec's trainer, servers
    and publisher work on them.
    """
    faust_compat.check_installed()
    if app.conf.table_standby_replicas:
        raise ValueError("mount streamrec's agents into an app with table_standby_replicas=0")
    return FaustAgents(app, WorkerConfig.from_settings(settings), catalog=catalog, metrics=metrics)


def faust_app(settings: WorkerConfig, kafka: KafkaConnection) -> faust.App:
    """The app `streamrec worker` runs with `STREAMREC_ENGINE=faust`.

    The group is the batch engine's, so switching engines resumes from the
    committed offsets. No standby replicas: a worker holds only the
    partitions it owns (as the batch engine). Faust's own web server is off:
    the worker's HTTP port is streamrec's.
    """
    faust_compat.check_installed()
    for name in ("faust", "mode"):  # their INFO is a line per service started or stopped
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
    if settings.worker.processing_guarantee == "exactly_once":
        raise SettingsError(
            "STREAMREC_PROCESSING_GUARANTEE=exactly_once runs on the batch engine (STREAMREC_ENGINE=batch)"
        )
    if kafka.secured:
        raise ValueError(
            "the faust engine does not take STREAMREC_KAFKA_SECURITY_* settings; mount the agents "
            "in a faust.App configured with its broker_credentials (streamrec.streams.faust_engine.mount)"
        )
    url = settings.worker.url
    signature = Access.from_settings(settings.access).sign(url)
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return faust.App(
        Topics.from_settings(settings.kafka).worker_group,
        broker=[f"kafka://{address}" for address in kafka.bootstrap.split(",")],
        store="memory://",
        datadir=datadir,  # not the default, a folder in the working directory
        web_enabled=False,
        canonical_url=f"{url}/{signature}" if signature else url,
        table_standby_replicas=0,
        topic_partitions=settings.kafka.partitions,
        topic_allow_declare=False,
        broker_commit_interval=settings.worker.commit_interval_s,
        # Join within seconds, as the batch engine (brokers wait up to half
        # the session timeout for members before the first assignment).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=30.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
        stream_wait_empty=False,
    )


class FaustWorker(FaustAgents, StreamEngine):
    """`streamrec worker` on the faust engine: the StreamWorker's lifecycle."""

    def __init__(
        self,
        settings: WorkerConfig,
        kafka: KafkaConnection,
        *,
        catalog: CatalogView | None = None,
        metrics: WorkerMetrics | None = None,
    ):
        super().__init__(faust_app(settings, kafka), settings, kafka=kafka, catalog=catalog, metrics=metrics)
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await ensure_topics(self.settings.kafka, self.kafka)
        self._producer = await start_producer(self.kafka, linger_ms=5)
        kafka = self.kafka

        async def highwaters(*tps: TP) -> dict[TP, int]:
            """A restore reads each changelog to its true end (tansu's ListOffsets is a batch short)."""
            ends = await end_offsets(kafka, [TopicPartition(tp.topic, tp.partition) for tp in tps])
            return {TP(tp.topic, tp.partition): end for tp, end in ends.items()}

        faust_compat.restore_to(self.app.consumer, highwaters)
        await self.app.start()

    async def run(self) -> None:
        """Until `stop()`; a crashed app raises its reason."""
        while not self._stopping.is_set():
            if self.app.crashed:
                raise self.app.crash_reason or RuntimeError("the Faust app crashed")
            try:
                await asyncio.wait_for(self._stopping.wait(), 0.1)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Let the agents finish the events they hold, commit, then stop the
        app and leave. (Faust's own stop committed nothing after the last
        timed commit: a restart then met every event since again.)"""
        try:
            if self.app.started and not self.app.crashed:
                try:
                    await asyncio.wait_for(self.app.consumer.wait_empty(), CLOSE_TIMEOUT_S)
                except TimeoutError:
                    log.warning("agents still held events after %.0f s: the group redelivers them", CLOSE_TIMEOUT_S)
                # A timed commit under way may predate the last acks, and commit() would only wait for it.
                await self.app.consumer.maybe_wait_for_commit_to_finish()
                await self.app.consumer.commit()
                # Faust's own record of acks can lose those of events redelivered around a
                # rebalance (a restart then met them again): what the agents folded is committed.
                await faust_compat.commit_positions(self.app.consumer, self._folded)
            faust_compat.leave_on_stop(self.app.consumer)
            await _within(self.app.stop(), "the Faust app's stop")
        finally:
            await self._leave()

    def hold_commits(self) -> None:
        """From now on write no changelog and commit no offsets (`abort`, fault tests)."""
        faust_compat.hold_commits(self.app.consumer)

    async def abort(self) -> None:
        """Leave without committing: what a killed process leaves behind."""
        self.stop()
        self.hold_commits()
        await self.close()

    async def _leave(self) -> None:
        await self.catalog.stop()
        if self._producer is not None:
            await self._producer.stop()


async def _within(step: Awaitable[None], what: str) -> None:
    """A shutdown step bounded: after a crash Faust's stop can wait forever on
    a service that is gone, and a worker that cannot stop cannot be restarted."""
    try:
        await asyncio.wait_for(step, CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("%s took over %.0f s: leaving without it", what, CLOSE_TIMEOUT_S)
