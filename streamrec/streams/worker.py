"""The batch engine (the default): a consumer-group member that runs the agents in batches.

It keeps Faust's model (agents, changelog-backed tables partitioned like
their input, state rebuilt from the changelog on assignment) and runs it on
aiokafka's batch API: about seven times the events/s of the same agents on a
faust-streaming app (`streams/faust_engine.py`, docs/engines.md).

The cycle, and why nothing is lost or counted twice:

1. take up to `max_batch_events` records (`getmany`) and fold them into the
   in-memory tables;
2. at least every `commit_interval_s`: write each changed key once to its
   changelog, write dead letters and re-routed events, wait for every ack
   (acks=all, idempotent where the broker allows), and only then commit the input offsets.

A crash between 2's writes and its commit makes the group redeliver the
batch; its event ids are already in the restored user state, so the
duplicates change nothing. Item statistics carry no event ids: a crash
between the two tables' writes loses the replayed events' item counts.

With `STREAMREC_PROCESSING_GUARANTEE=exactly_once`, 2 is one Kafka
transaction: the rows, dead letters, re-routes and the input offsets commit
together or not at all, and every reader of a changelog reads committed
records only, so a crash leaves nothing to count again, item statistics
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, ProducerFenced
from aiokafka.protocol.group import JoinGroupRequest

from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.http import Access
from streamrec.foundation.kafka import (
    KafkaConnection,
    leave_even_at_generation_zero,
    start_producer,
    start_transactional_producer,
)
from streamrec.foundation.topics import ensure_topics
from streamrec.streams.agents import Outcome
from streamrec.streams.assignor import CopartitionedAssignor, Owner
from streamrec.streams.metrics import WorkerMetrics
from streamrec.streams.state import StreamEngine, WorkerConfig
from streamrec.streams.tables import Snapshot

log = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 6.0  # the group's session: a member silent this long is given no partitions


class StreamWorker(StreamEngine):
    """The batch engine (the default)."""

    def __init__(
        self,
        settings: WorkerConfig,
        kafka: KafkaConnection,
        *,
        catalog: CatalogView | None = None,
        metrics: WorkerMetrics | None = None,
    ):
        super().__init__(settings, kafka, catalog=catalog, metrics=metrics)
        # The topics partitioned by user, whose partitions wait for the state's restore.
        self.user_topics = (*self.topics.events, self.topics.control)
        url = settings.worker.url
        self.assignor = CopartitionedAssignor(url, Access.from_settings(settings.access).sign(url))
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: dict[TopicPartition, int] = {}  # to commit at the next flush
        self._positions: dict[TopicPartition, int] = {}  # next offset to process
        self._outcome = Outcome()
        self._fatal: BaseException | None = None  # raised by run(): a failed restore
        self._commit_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._stalled = False  # set by the watchdog: the event loop stood still longer than the session
        self._transactions: AIOKafkaProducer | None = None  # exactly_once: commits go through it

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        await ensure_topics(self.settings.kafka, self.kafka)
        self._producer = await start_producer(self.kafka, linger_ms=5, max_batch_size=1024 * 1024)
        if self.settings.worker.processing_guarantee == "exactly_once":
            self._transactions = await self._start_transactions()
        await self.catalog.start(self.kafka)
        self._consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            isolation_level="read_committed",  # re-routed events of aborted transactions are not events
            group_id=self.topics.worker_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            # Join within a few seconds: brokers wait up to half the session
            # timeout for members before the first assignment (30 s at 60 s).
            session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=30_000,
            max_poll_interval_ms=120_000,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # An idle fetch waits this long for new events (the default 500 ms
            # would be most of an event's way to its recommendation).
            fetch_max_wait_ms=10,
        )
        await self._consumer.start()
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe([*self.user_topics, self.topics.catalog], listener=_Rebalance(self))

    async def run(self) -> None:
        """Process until `stop()`; the caller has awaited `start()`.

        Commits run in the background: while one awaits the broker's acks the
        loop goes on folding the next records (their offsets go in the next one).
        """
        assert self._consumer is not None
        committing: asyncio.Task | None = None
        last_commit = time.monotonic()
        interval = self.settings.worker.commit_interval_s
        watchdog = asyncio.create_task(self._watch_the_loop())
        try:
            while not self._stopping.is_set():
                if self._fatal is not None:
                    raise self._fatal
                batches = await self._consumer.getmany(
                    timeout_ms=int(min(interval, 0.1) * 1000), max_records=self.settings.worker.max_batch_events
                )
                if self._stalled:
                    self._rejoin_after_a_stall()
                    continue  # what was fetched is refetched after the rejoin
                await self.catalog.poll()
                if batches:
                    self._process(batches)
                    await asyncio.sleep(0)  # a turn for the publisher: getmany does not yield while records wait
                if committing is not None and committing.done():
                    committing, done = None, committing
                    done.result()  # a failed commit stops the worker; the group redelivers
                if committing is None and time.monotonic() - last_commit >= interval:
                    committing = asyncio.create_task(self.commit())
                    last_commit = time.monotonic()
        finally:
            watchdog.cancel()
            if committing is not None:
                await committing

    def stop(self) -> None:
        self._stopping.set()

    async def abort(self) -> None:
        """Leave without flushing tables or committing offsets: what a killed
        process leaves behind (the group redelivers; fault tests use it)."""
        self.stop()
        await self._leave()

    async def close(self) -> None:
        """Flush and commit what was processed, then leave the group."""
        try:
            if self._consumer is not None and self._producer is not None:
                await self.commit()
        finally:
            await self._leave()

    async def _leave(self) -> None:
        if self._consumer is not None:
            leave_even_at_generation_zero(self._consumer)
            await self._consumer.stop()
        await self.catalog.stop()
        for producer in (self._producer, self._transactions):
            if producer is not None:
                await producer.stop()

    # --- the cycle ----------------------------------------------------------

    def _process(self, batches: dict[TopicPartition, list]) -> None:
        started = time.perf_counter()
        outcome = self._outcome
        for tp, records in batches.items():
            if not records:
                continue
            if tp.topic == self.topics.catalog:
                self.agents.on_catalog(tp.topic, tp.partition, records, outcome)
            elif tp.partition not in self._ready:  # fetched before its state was restored: fetch it again later
                self._consumer.seek(tp, records[0].offset)
                continue
            elif tp.topic == self.topics.control:
                self.agents.on_control(tp.topic, tp.partition, records, outcome)
            else:
                self.agents.on_events(tp.topic, tp.partition, records, outcome)
            self._offsets[tp] = self._positions[tp] = records[-1].offset + 1
        self._hand_over_touched()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def commit(self) -> None:
        """Write table changes, dead letters, re-routes and forgotten users'
        tombstones; then commit offsets (exactly_once: all in one transaction)."""
        assert self._producer is not None and self._consumer is not None
        async with self._commit_lock:
            # Offsets, outcome and both tables' rows at one instant of the fold (no
            # await between): an event is in all of them or in none.
            offsets, self._offsets = self._offsets, {}
            outcome, self._outcome = self._outcome, Outcome()
            rows = Snapshot(*self.tables)
            try:
                if self._transactions is not None:
                    committed = await self._in_a_transaction(outcome, rows, offsets)
                else:
                    await self._write(self._producer, outcome, rows)
                    committed = True
            except BaseException:
                # Nothing of this commit is known to be written: its offsets,
                # outcome and rows go back, so no later commit passes an offset
                # whose effects were not written.
                self._offsets = {**offsets, **self._offsets}
                self._outcome = outcome.absorb(self._outcome)
                rows.mark_again()
                raise
            if offsets and self._transactions is None:
                try:
                    await self._consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    # Partitions moved in a rebalance: the new owner resumes from
                    # the last commit and de-duplicates what this one wrote.
                    log.warning("offset commit skipped after a rebalance: %s", exc)
            if committed:
                self._count(outcome)
            # The tables' rows live until evicted and hold no reference cycles:
            # kept out of the cyclic collector's sight, its full collections
            # walk only what is newer than the last commit (they walked every
            # row, up to 300 ms each at 100k users, the publisher's p99).
            # Refcounting still frees every replaced row.
            gc.freeze()

    async def _write(self, producer: AIOKafkaProducer, outcome: Outcome, rows: Snapshot) -> None:
        """Send a commit's records and wait for every acknowledgement."""
        keep_payload = self.settings.worker.deadletter_payload
        sends = [
            await producer.send(
                self.topics.deadletter,
                dead.payload() if keep_payload else None,
                key=dead.key if keep_payload else None,
                headers=dead.headers(),
            )
            for dead in outcome.dead_letters
        ]
        sends += [  # after any answer published before: a forgotten user's answers go too
            await producer.send(self.topics.recommendations, None, key=user_id.encode())
            for user_id in outcome.forgotten
        ]
        sends += [await producer.send(r.topic, r.value, key=r.key) for r in outcome.reroutes]
        await rows.write(producer)
        await asyncio.gather(*sends)

    async def _in_a_transaction(self, outcome: Outcome, rows: Snapshot, offsets: dict[TopicPartition, int]) -> bool:
        """The commit as one transaction. One that outlived the group's session
        (the process was stopped, the machine froze), or that the broker aborted
        meanwhile (its timeout fences the producer), is not committed: the group
        may have given its partitions to another worker. The worker then drops
        its state and rejoins (as after a stall), with a new producer whose
        start aborts whatever the old one left open."""
        producer = self._transactions
        opened = time.monotonic()
        try:
            await producer.begin_transaction()
            await asyncio.wait_for(self._write_with_offsets(producer, outcome, rows, offsets), SESSION_TIMEOUT_S)
            if time.monotonic() - opened <= SESSION_TIMEOUT_S and not self._stalled:
                await asyncio.wait_for(producer.commit_transaction(), SESSION_TIMEOUT_S)
                return True
        except (TimeoutError, ProducerFenced):
            pass  # stale, as below
        except asyncio.CancelledError:
            raise
        except BaseException:
            await self._renew_transactions()
            raise
        log.warning("a commit's transaction was fenced or outlived the session: not committed; state dropped")
        await self._renew_transactions()
        self._drop_state()
        self._stalled = True  # the run loop rejoins the group
        return False

    async def _write_with_offsets(
        self, producer: AIOKafkaProducer, outcome: Outcome, rows: Snapshot, offsets: dict[TopicPartition, int]
    ) -> None:
        await self._write(producer, outcome, rows)
        if offsets:
            await producer.send_offsets_to_transaction(offsets, self.topics.worker_group)

    async def _start_transactions(self) -> AIOKafkaProducer:
        """One transactional id per worker address: a restarted worker's producer
        fences the one its crashed self left open (aborted at once, not at the timeout)."""
        return await start_transactional_producer(
            self.kafka,
            f"{self.topics.worker_group}@{self.settings.worker.url}",
            linger_ms=5,
            max_batch_size=1024 * 1024,
        )

    async def _renew_transactions(self) -> None:
        """Replace a producer that may be fenced or stuck (its sender stops on a fence)."""
        old, self._transactions = self._transactions, None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 5.0)
        self._transactions = await self._start_transactions()

    # --- rebalancing ----------------------------------------------------------

    async def _watch_the_loop(self, tick_s: float = 0.5) -> None:
        """Notice the event loop standing still longer than the group's session
        (a paused or stopped process, a frozen machine, a batch that never
        yields): no heartbeat went out, so the group has given this worker's
        partitions away and may have folded events into them elsewhere."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(tick_s)
            if time.monotonic() - started - tick_s > SESSION_TIMEOUT_S:
                self._stalled = True

    def _rejoin_after_a_stall(self) -> None:
        """The rows held here are stale: none is written; they are dropped, and
        the rejoin's assignment restores every partition from the changelog."""
        log.warning("the worker stood still longer than the group's session: its state is dropped and restored")
        self._stalled = False
        self._drop_state()
        self._consumer.unsubscribe()
        self._subscribe()

    def _forgotten_by_the_group(self) -> bool:
        """The coordinator no longer knows this member (its session expired while
        heartbeats could not reach it): aiokafka resets the member id before
        revoking. aiokafka has no public accessor for it."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        return coordinator is not None and coordinator.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID

    def _drop_state(self) -> None:
        """Forget every partition's rows and everything processed since the last commit (redelivered)."""
        self._ready.clear()
        for table in self.tables:
            table.drop(table.partitions)
        self._offsets, self._outcome = {}, Outcome()

    async def on_revoked(self) -> None:
        self._ready.clear()
        if self._forgotten_by_the_group():  # others may own the rows now: write none of them
            if self.users.partitions:  # (before the first join there are none: nothing to say)
                log.warning("the group forgot this worker: its state is dropped and restored on assignment")
            self._drop_state()
            return
        if self._producer is not None:
            try:
                await self.commit()
            except KafkaError:
                log.exception("flush on revoke failed; the next owner reprocesses from the last commit")
                for table in self.tables:
                    table.discard_pending()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the state of new partitions before any of their events is
        processed (aiokafka may fetch before this callback: `_process` skips
        and re-seeks records of partitions not yet in `_ready`)."""
        numbers = {tp.partition for tp in assigned if tp.topic in self.user_topics}
        self.agents.partitions = self.partition_count()
        self._positions = {tp: pos for tp, pos in self._positions.items() if tp in assigned}
        held = self.users.partitions
        for table in self.tables:
            table.drop(held - numbers)
        new = numbers - held
        self.metrics.partitions.set(len(numbers))
        restoring = [tp for tp in assigned if tp.partition in new and tp.topic in self.user_topics]
        self._consumer.pause(*restoring)
        try:
            for table in self.tables:
                await table.restore(self.kafka, new)
        except Exception as exc:  # aiokafka would only log it; the worker must stop
            self._fatal = exc
            raise
        if not set(restoring) <= self._consumer.assignment():
            # A stall's rejoin unsubscribed meanwhile (the cut test found it: the
            # partitions stayed paused): what was restored may be stale by the
            # next assignment, which restores it again.
            for table in self.tables:
                table.drop(new)
            return
        self._ready = numbers
        self._consumer.resume(*restoring)
        self.status.ready = True

    # --- queries --------------------------------------------------------------

    @property
    def owners(self) -> Mapping[int, Owner]:
        return self.assignor.owners

    def partition_count(self) -> int:
        assert self._consumer is not None
        return len(self._consumer.partitions_for_topic(self.topics.clicks) or ()) or self.settings.kafka.partitions

    def lag(self) -> int:
        """Records in the assigned input partitions not yet processed."""
        if self._consumer is None:
            return 0
        total = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and tp in self._positions:
                total += max(0, highwater - self._positions[tp])
        return total


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: StreamWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(assigned)
