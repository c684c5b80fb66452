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
one index search per search depth in the batch. Features come from the
worker's tables (wired in `streamrec.processes`), so a recommendation always
sees the event that triggered it.

Deciding who is due, and the answers before the first model, stay here; the
model's answers are an `Answering` strategy (`streamrec.serving.answers`):
by default processes of their own beside the worker
(`streamrec.serving.publisher_process`, `STREAMREC_PUBLISHER_PROCESSES` of
them), or with 0 the worker's own event loop
(`streamrec.serving.loop_answering`), each following `recs.model-updates`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Gauge

from streamrec.foundation.features import UserFeatures
from streamrec.foundation.placement_book import DEFAULT_PLACEMENT
from streamrec.foundation.popular import LIVE_POPULARITY, LivePopularity
from streamrec.serving.answers import ERROR_PAUSE_S, Answering, Due, Report, Sent, send_answers

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.005  # how long the loop sleeps when nothing is due
LATENCIES_KEPT = 100_000  # recent event-to-publish latencies, for percentiles
RECENT_PUBLISHES = 2_000  # the p99 /metrics and /status report is of these newest publishes


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


class RecommendationPublisher:
    def __init__(
        self,
        answering: Callable[[Report], Answering],
        features: Callable[[int, str], UserFeatures | None],
        producer: AIOKafkaProducer,
        topic: str,
        fallback: LivePopularity,
        *,
        k: int = 10,
        interval_s: float = 0.5,
        batch_size: int = 64,
        placement: str = DEFAULT_PLACEMENT,
    ):
        """`answering(report)` makes the strategy that answers with the model
        (`LoopAnswering`, `PublisherProcesses`); it reports to this publisher."""
        self.answering = answering(self.record)
        self.features = features  # (partition, user id) -> the worker's live row
        self.producer = producer
        self.topic = topic
        self.fallback = fallback  # answers while no model is served yet
        self.k = k
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.placement = placement  # named in the answers' recommendation ids
        self.status = PublisherStatus()
        self._waiting: dict[str, tuple[int, str, float]] = {}  # user -> newest note not yet published
        self._last_publish: dict[str, float] = {}  # user -> monotonic time, within the interval only
        self._forgotten: list[str] = []  # users whose answers must end before their tombstone
        self._wake = asyncio.Event()

    @property
    def model_version(self) -> str | None:
        """The version answering, None before the first model."""
        return self.answering.version

    def note(self, touched: dict[str, tuple[int, str, float]], forgotten: Sequence[str] = ()) -> None:
        """Users whose features just changed, with their newest event, and
        users just forgotten: none of their answers may follow the worker's
        tombstone, so an answering process gets to send one after its own."""
        self.status.coalesced += sum(1 for user_id in touched if user_id in self._waiting)
        self._waiting.update(touched)
        for user_id in forgotten:
            self._waiting.pop(user_id, None)
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
        follow = asyncio.create_task(self.answering.run(stop))
        try:
            await self._publish_until(stop, follow)
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)

    async def _publish_until(self, stop: asyncio.Event, follow: asyncio.Task) -> None:
        while not stop.is_set():
            if follow.done():
                follow.result()  # an answering process ended: so does the worker, with its reason
            ready = self.due(time.monotonic())
            if not ready:
                if self._forgotten:
                    await self.answering.publish([], self._take_forgotten())
                self._wake.clear()
                with_timeout = min(IDLE_WAIT_S if self._waiting else 1.0, self.interval_s or IDLE_WAIT_S)
                try:
                    await asyncio.wait_for(self._wake.wait(), with_timeout)
                except TimeoutError:
                    pass
                continue
            handed_over = not self.answering.on_worker_loop and self.answering.version is not None
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
        if self.answering.version is None:  # before the first model: live popularity, answered here
            answers = [self.fallback.recommend(one.user, self.k) for one in due]
            sent = await send_answers(
                self.producer, self.topic, due, answers, LIVE_POPULARITY, self._lost, placement=self.placement
            )
            sent.without_model = len(sent.latencies_ms)
            self.record(sent)
            return bool(sent.refused)
        now = time.monotonic()
        self._last_publish.update((one.user.user_id, now) for one in due)
        return await self.answering.publish(due, self._take_forgotten())  # reported back through `record`

    def _take_forgotten(self) -> list[str]:
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    def record(self, sent: Sent, errors: int = 0) -> None:
        """A batch's answers sent (here or by the answering strategy): the
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
