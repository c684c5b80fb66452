"""The live overview the console shows, sampled by the API server.

A server holds no worker's counters, so it reads what the workers write:
events counted (the item-statistics replica it already follows), the
recommendations published (their `latency_ms`, read from the topic's end),
dead letters by reason (their `reason` header) and the worker group's lag per
partition (committed offsets against the ends, asked of the cluster). Every
SAMPLE_S a point is kept, for the last KEPT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from itertools import islice

import numpy as np
from aiokafka import TopicPartition

from foundation.codec import decode
from foundation.kafka import FollowedTopic, KafkaConnection, admin_client, partitions_of, reader
from foundation.topics import Topics
from index.live import ItemStatsReplica

log = logging.getLogger(__name__)

SAMPLE_S = 2.0  # one point this often
LAG_EVERY_S = 10.0  # the group's lag is asked of the cluster this often
KEPT_S = 600.0  # the time series a page shows: the last ten minutes
REASONS_KEPT = 50  # distinct dead-letter reasons counted; the rest count as "other"
LATENCIES_KEPT = 20_000  # recent publish latencies, for p50/p99


@dataclass
class Point:
    t: float  # wall clock
    events_per_s: float
    publishes_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    lag: int
    dead_letters: int


class RecommendationsTap(FollowedTopic):
    """The recommendations topic from its end: publishes and their latencies.

    Its partitions stay paused between polls, so it fetches once a sample
    rather than as each message arrives (on tansu every fetch lists all of a
    partition's batches: following it live cost the broker more and more)."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.published = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCIES_KEPT)

    async def start(self, kafka: KafkaConnection) -> None:
        tps = await self._assign_every_partition(kafka)
        await self._consumer.seek_to_end(*tps)
        self._consumer.pause(*tps)

    async def poll(self, timeout_ms: int = 0) -> int:
        """Everything published since the last poll."""
        consumer = self._consumer
        consumer.resume(*consumer.assignment())
        try:
            taken = total = await super().poll(timeout_ms=200)
            while taken:
                total += (taken := await super().poll(timeout_ms=50))
            return total
        finally:
            consumer.pause(*consumer.assignment())

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a forgotten user's tombstone
            return
        with contextlib.suppress(Exception):  # a value that is not a recommendation is not counted
            self.latencies_ms.append(float(decode(value)["latency_ms"]))
            self.published += 1


class DeadLetterTap(FollowedTopic):
    """Dead letters from the beginning, counted by their `reason` header."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.reasons: Counter[str] = Counter()

    def apply_record(self, record) -> None:
        reason = next((v.decode(errors="replace") for k, v in record.headers or () if k == "reason"), "unknown")
        reason = reason.split(":")[0][:120]  # the kind, not the record's own text
        if reason not in self.reasons and len(self.reasons) >= REASONS_KEPT:
            reason = "other"
        self.reasons[reason] += 1


@dataclass
class Pulse:
    """The sampler: start it with the server, read `overview()` from a request."""

    kafka: KafkaConnection
    topics: Topics
    item_stats: ItemStatsReplica
    points: deque[Point] = field(default_factory=lambda: deque(maxlen=int(KEPT_S / SAMPLE_S)))
    lag_by_partition: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recommendations = RecommendationsTap(self.topics.recommendations)
        self.dead_letters = DeadLetterTap(self.topics.deadletter)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.recommendations.start(self.kafka), self.dead_letters.start(self.kafka))
        admin, ends = admin_client(self.kafka), reader(self.kafka)
        await admin.start()
        await ends.start()
        last = (time.monotonic(), self.item_stats.events_counted(), self.recommendations.published)
        lag_due = 0.0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SAMPLE_S)
                await self.recommendations.poll()
                await self.dead_letters.poll()
                if time.monotonic() >= lag_due:
                    lag_due = time.monotonic() + LAG_EVERY_S
                    with contextlib.suppress(Exception):  # a cluster that does not answer leaves the last lag
                        self.lag_by_partition = await self._lag(admin, ends)
                last = self._sample(last)
        finally:
            await asyncio.gather(self.recommendations.stop(), self.dead_letters.stop(), admin.close(), ends.stop())

    def _sample(self, last: tuple[float, int, int]) -> tuple[float, int, int]:
        now, events, published = time.monotonic(), self.item_stats.events_counted(), self.recommendations.published
        then, last_events, last_published = last
        new = published - last_published
        recent = list(islice(reversed(self.recommendations.latencies_ms), new))
        p50, p99 = (float(v) for v in np.percentile(recent, [50, 99])) if recent else (None, None)
        elapsed = max(now - then, 1e-9)
        self.points.append(Point(
            time.time(), round((events - last_events) / elapsed, 1), round(new / elapsed, 1),
            p50, p99, sum(self.lag_by_partition.values()), sum(self.dead_letters.reasons.values()),
        ))  # fmt: skip
        return now, events, published

    async def _lag(self, admin, consumer) -> dict[str, int]:
        """Records not yet processed by the worker group, per event partition
        (the partitions named: tansu drops a connection asking for all)."""
        inputs = [self.topics.clicks, self.topics.purchases]
        tps = [TopicPartition(t, p) for t, ps in (await partitions_of(self.kafka, inputs)).items() for p in ps]
        committed = await admin.list_consumer_group_offsets(self.topics.worker_group, partitions=tps)
        ends = await consumer.end_offsets(tps) if tps else {}
        return {
            f"{tp.topic}[{tp.partition}]": ends[tp] - max(0, committed[tp].offset if tp in committed else 0)
            for tp in sorted(ends)
        }

    def overview(self) -> dict:
        return {
            "points": [asdict(point) for point in self.points],
            "lag_by_partition": self.lag_by_partition,
            "dead_letters_by_reason": dict(self.dead_letters.reasons.most_common()),
        }
