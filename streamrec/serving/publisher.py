"""Real-time recommendations: after a user's features change, the worker
searches the current index for them and publishes the answer.

Before the first model, the answers come from live popularity in the user's
own categories (`streamrec.foundation.popular`), marked `model_version:
"live-popularity"`: a shop gets recommendations seconds after its first event.

The worker's agents note each changed user with their latest event
(`Agents.touched`); the publisher drains those notes, keeps at most one
publish per user per `publish_interval_s` (a user clicking in a burst gets one
publish now and one, on the newest state, when the interval ends), and
answers users in batches of `index_batch_size`: one user-tower pass, and
one index search per search depth in the batch. The index is the worker's
own LiveModel, hot-swapped on `recs.model-updates`; features come from the
worker's tables (wired in `streamrec.processes`), so a recommendation always
sees the event that triggered it.

By default the model's answers are computed and sent by a process of its
own beside the worker (`streamrec.serving.publisher_process`, `STREAMREC_PUBLISHER_PROCESSES`
of them); deciding who is due, and the answers before the first model, stay
here. With 0, everything runs on the worker's event loop, between its
batches: the index is never searched while catalog changes are added to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from streamrec.foundation.codec import encode
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.popular import LIVE_POPULARITY, LivePopularity
from streamrec.foundation.schema import Recommendation, ScoredItem

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder

    from streamrec.serving.live import LiveModel
    from streamrec.serving.publisher_process import PublisherProcesses

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.005  # how long the loop sleeps when nothing is due
LATENCIES_KEPT = 100_000  # recent event-to-publish latencies, for percentiles
RECENT_PUBLISHES = 2_000  # the p99 /metrics and /status report is of these newest publishes
ERROR_PAUSE_S = 1.0  # after the broker refused an answer, the publisher waits this long


@dataclass
class PublisherStatus:
    published: int = 0
    coalesced: int = 0  # notes folded into a later publish of the same user
    without_model: int = 0  # answers published from live popularity, before any model
    errors: int = 0  # answers the broker refused (answered again after the interval) or did not acknowledge
    last_publish: float = 0.0  # monotonic time of the newest publish
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    def percentiles(self, last: int | None = None) -> tuple[float, float]:
        """p50 and p99 event-to-publish latency (ms) of the recent (or `last`) publishes."""
        if not self.latencies_ms:
            return 0.0, 0.0
        kept = np.fromiter(self.latencies_ms, dtype=np.float64)
        p50, p99 = np.percentile(kept[-last:] if last else kept, [50, 99])
        return float(p50), float(p99)

    def view(self, backlog: int, model_version: str | None) -> dict:
        """What the worker's /status shows of its publisher (the console reads it)."""
        p50, p99 = self.percentiles(last=RECENT_PUBLISHES)
        return {
            "model_version": model_version,
            "backlog_users": backlog,
            "published": self.published,
            "without_model": self.without_model,
            "coalesced": self.coalesced,
            "errors": self.errors,
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
        }


def export_metrics(publisher: RecommendationPublisher, registry: CollectorRegistry) -> None:
    """The publisher's state in the worker's /metrics, read when scraped."""
    status = publisher.status
    for name, doc, read in (
        ("streamrec_publisher_backlog_users", "Users with a change not yet published.", lambda: publisher.waiting),
        ("streamrec_publisher_published", "Recommendations published.", lambda: status.published),
        (
            "streamrec_publisher_without_model",
            "Published from live popularity, before any model.",
            lambda: status.without_model,
        ),
        (
            "streamrec_publisher_coalesced",
            "Changes folded into a later publish of the same user.",
            lambda: status.coalesced,
        ),
        ("streamrec_publisher_errors", "Answers the broker did not take.", lambda: status.errors),
        (
            "streamrec_publisher_p99_ms",
            "Event-to-publish p99 of the last 2,000 publishes.",
            lambda: status.percentiles(last=RECENT_PUBLISHES)[1],
        ),
    ):
        Gauge(name, doc, registry=registry).set_function(read)


@dataclass(frozen=True)
class Due:
    """A user to answer now: their features, and the event that changed them."""

    user: UserFeatures
    partition: int
    event_id: str
    event_ts: float

    @property
    def note(self) -> tuple[int, str, float]:
        return self.partition, self.event_id, self.event_ts


@dataclass
class Sent:
    """What sending one batch of answers did."""

    latencies_ms: dict[str, float]  # user id -> event-to-publish latency, of each answer sent
    sent_at: float  # monotonic
    refused: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # notes of users the broker refused
    without_model: int = 0


Batch = tuple[int, "BatchBuilder", list[tuple[Due, float]]]  # a partition's record batch, its users and latencies


async def send_answers(
    producer: AIOKafkaProducer,
    topic: str,
    due: list[Due],
    answers: list[list[ScoredItem]],
    version: str,
    on_lost: Callable[[int], None],
) -> Sent:
    """Each user's answer on `topic`, keyed by user, in the partition Kafka's
    default partitioner gives the key, one record batch per partition (an
    aiokafka send per answer cost 11 µs, an append to a batch 3). A batch the
    broker refuses leaves its users, and those of the batches after it,
    waiting; `on_lost(n)`: n answers sent were not acknowledged."""
    sent = Sent({}, time.monotonic())
    batches = _record_batches(producer, len(await producer.partitions_for(topic)), due, answers, version)
    for n, (partition, batch, members) in enumerate(batches):
        try:
            delivery = await producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:
            log.warning("the broker did not take recommendations (retrying): %s", exc)
            sent.refused = {one.user.user_id: one.note for _, _, later in batches[n:] for one, _ in later}
            break
        delivery.add_done_callback(count_if_lost(on_lost, len(members)))
        sent.latencies_ms.update((one.user.user_id, latency_ms) for one, latency_ms in members)
    return sent


def _record_batches(
    producer: AIOKafkaProducer, partitions: int, due: list[Due], answers: list[list[ScoredItem]], version: str
) -> list[Batch]:
    """The answers encoded into record batches, each full one before the partition's next."""
    wall = time.time()
    filling: dict[int, Batch] = {}
    full: list[Batch] = []
    for one, answer in zip(due, answers, strict=True):
        user_id = one.user.user_id
        latency_ms = max(0.0, (wall - one.event_ts) * 1000)
        message = Recommendation(user_id, tuple(answer), version, one.event_id, wall, round(latency_ms, 3))
        key, value = user_id.encode(), encode(message.to_wire())
        partition = partition_for(user_id, partitions)
        batch = filling.get(partition) or filling.setdefault(partition, (partition, producer.create_batch(), []))
        if batch[1].append(key=key, value=value, timestamp=None) is None:  # full: a new one
            full.append(batch)
            batch = filling[partition] = (partition, producer.create_batch(), [])
            batch[1].append(key=key, value=value, timestamp=None)
        batch[2].append((one, latency_ms))
    return full + list(filling.values())


def count_if_lost(on_lost: Callable[[int], None], count: int) -> Callable[[asyncio.Future], None]:
    """A delivery's callback: `on_lost(count)` when the broker did not acknowledge it."""

    def delivered(delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            on_lost(count)

    return delivered


class RecommendationPublisher:
    def __init__(
        self,
        live: LiveModel | None,
        features: Callable[[int, str], UserFeatures | None],
        producer: AIOKafkaProducer,
        topic: str,
        fallback: LivePopularity,
        *,
        k: int = 10,
        interval_s: float = 0.5,
        batch_size: int = 64,
        explain: bool = False,
        processes: PublisherProcesses | None = None,
    ):
        """The model's answers come from `live`, in this process, or from
        `processes`, which answer and send them in processes of their own."""
        self.live = live
        self.processes = processes
        self.features = features  # (partition, user id) -> the worker's live row
        self.producer = producer
        self.topic = topic
        self.fallback = fallback  # answers while no model is served yet
        self.k = k
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.explain = explain
        self.status = PublisherStatus()
        self._waiting: dict[str, tuple[int, str, float]] = {}  # user -> newest note not yet published
        self._last_publish: dict[str, float] = {}  # user -> monotonic time, within the interval only
        self._forgotten: list[str] = []  # users the answering processes must stop answering
        self._wake = asyncio.Event()

    @property
    def model_version(self) -> str | None:
        """The version answering, None before the first model."""
        return self.processes.version if self.processes is not None else self.live.version if self.live else None

    def note(self, touched: dict[str, tuple[int, str, float]], forgotten: list[str] = ()) -> None:
        """Users whose features just changed, with their newest event, and
        users just forgotten: none of their answers may follow the worker's
        tombstone, so their answering process gets to send one after its own."""
        self.status.coalesced += sum(1 for user_id in touched if user_id in self._waiting)
        self._waiting.update(touched)
        for user_id in forgotten:
            self._waiting.pop(user_id, None)
        if self.processes is not None:
            self._forgotten.extend(forgotten)
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Users with a change not yet published."""
        return len(self._waiting)

    def view(self) -> dict:
        return self.status.view(self.waiting, self.model_version)

    def due(self, now: float) -> list[str]:
        """Waiting users whose last publish is at least an interval old, in the order first noted."""
        last, interval = self._last_publish, self.interval_s
        ready = [user_id for user_id in self._waiting if now - last.get(user_id, -np.inf) >= interval]
        if len(last) > 4 * max(1, len(self._waiting)) + 10_000:  # forget publishes older than the interval
            self._last_publish = {u: t for u, t in last.items() if now - t < interval}
        return ready

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`, following the catalog and model versions meanwhile."""
        processes = self.processes
        follow = asyncio.create_task(processes.run(stop, self.record) if processes else self.live.follow(stop))
        try:
            await self._publish_until(stop, follow)
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            if self.live is not None:
                await self.live.stop()

    async def _publish_until(self, stop: asyncio.Event, follow: asyncio.Task) -> None:
        while not stop.is_set():
            if follow.done():
                follow.result()  # an answering process ended: so does the worker, with its reason
            ready = self.due(time.monotonic())
            if not ready:
                if self._forgotten:
                    await self.processes.publish([], self._take_forgotten())
                self._wake.clear()
                with_timeout = min(IDLE_WAIT_S if self._waiting else 1.0, self.interval_s or IDLE_WAIT_S)
                try:
                    await asyncio.wait_for(self._wake.wait(), with_timeout)
                except TimeoutError:
                    pass
                continue
            handed_over = self.processes is not None and self.processes.version is not None
            for first in range(0, len(ready), self.batch_size):
                if await self.publish(ready[first : first + self.batch_size]):
                    await asyncio.sleep(ERROR_PAUSE_S)  # the refused users wait too
                if not handed_over:  # answered here: let the worker fold the next events
                    await asyncio.sleep(0)  # (a hand-over is cheap; a full pipe waits in `publish`)

    async def publish(self, user_ids: list[str]) -> bool:
        """Answer these waiting users; True when the broker refused some (they wait again)."""
        due = []
        for user_id in user_ids:
            note = self._waiting.pop(user_id)
            # A user whose partition just moved to another worker is that worker's to answer.
            if (user := self.features(note[0], user_id)) is not None:
                due.append(Due(user, *note))
        if self.processes is not None and self.processes.version is not None:
            now = time.monotonic()
            self._last_publish.update((one.user.user_id, now) for one in due)
            await self.processes.publish(due, self._take_forgotten())  # its report comes back to `record`
            return False
        answers, version = self._answer([one.user for one in due])
        sent = await send_answers(self.producer, self.topic, due, answers, version, self._lost)
        sent.without_model = len(sent.latencies_ms) if version == LIVE_POPULARITY else 0
        self.record(sent)
        return bool(sent.refused)

    def _take_forgotten(self) -> list[str]:
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    def record(self, sent: Sent, errors: int = 0) -> None:
        """A batch's answers sent (here or by an answering process): the
        status, and the refused users wait one interval, unless noted again."""
        status = self.status
        self._last_publish.update(dict.fromkeys(sent.latencies_ms, sent.sent_at))
        status.latencies_ms.extend(sent.latencies_ms.values())
        status.published += len(sent.latencies_ms)
        status.without_model += sent.without_model
        status.errors += errors + (1 if sent.refused else 0)
        if sent.latencies_ms:
            status.last_publish = sent.sent_at
        for user_id, note in sent.refused.items():
            self._waiting.setdefault(user_id, note)
            self._last_publish[user_id] = sent.sent_at

    def _lost(self, count: int) -> None:
        self.status.errors += count

    def _answer(self, users: list[UserFeatures]) -> tuple[list[list[ScoredItem]], str]:
        """The served model's answers, or live popularity's before the first model."""
        current = self.live.current if self.live is not None else None
        if current is None:
            return [self.fallback.recommend(user, self.k) for user in users], LIVE_POPULARITY
        return current.recommend_many(users, self.k, explain=self.explain), current.version.version
