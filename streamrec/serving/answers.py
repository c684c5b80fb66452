"""The publisher's answers on the wire, and where they are made.

Who is due (`Due`), what sending a batch of answers did (`Sent`), the answers
encoded into one record batch per partition and sent (`send_answers`), and
the strategy that answers with the model (`Answering`): on the worker's own
loop (`LoopAnswering`) or in answering processes (`PublisherProcesses`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamrec.foundation.attribution import Arm
from streamrec.foundation.codec import encode
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.schema import Recommendation, ScoredItem

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder

log = logging.getLogger(__name__)

ERROR_PAUSE_S = 1.0  # after the broker refused an answer, the publisher waits this long


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
    *,
    placement: str,
) -> Sent:
    """Each user's answer on `topic`, keyed by user, in the partition Kafka's
    default partitioner gives the key, one record batch per partition (an
    aiokafka send per answer cost 11 µs, an append to a batch 3). A batch the
    broker refuses leaves its users, and those of the batches after it,
    waiting; `on_lost(n)`: n answers sent were not acknowledged."""
    sent = Sent({}, time.monotonic())
    partitions = len(await producer.partitions_for(topic))
    batches = _record_batches(producer, partitions, due, answers, version, Arm(placement))
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
    producer: AIOKafkaProducer, partitions: int, due: list[Due], answers: list[list[ScoredItem]], version: str, arm: Arm
) -> list[Batch]:
    """The answers encoded into record batches, each full one before the
    partition's next; each with a recommendation id of `arm`."""
    wall = time.time()
    filling: dict[int, Batch] = {}
    full: list[Batch] = []
    for one, answer in zip(due, answers, strict=True):
        user_id = one.user.user_id
        latency_ms = max(0.0, (wall - one.event_ts) * 1000)
        answered = arm.new_id()
        message = Recommendation(user_id, tuple(answer), version, one.event_id, wall, round(latency_ms, 3), answered)
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


Report = Callable[[Sent, int], None]  # a batch sent, and how many answers were lost besides


class Answering(Protocol):
    """Where the model's answers are computed and sent; each strategy tells
    what it sent through the `Report` it was made with."""

    on_worker_loop: bool  # answers take turns with the worker's batches (the publisher yields after each)

    @property
    def version(self) -> str | None:
        """The version answering, None before the first model (the publisher then answers from popularity)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the model versions (and start whatever answers) until `stop`; raises if answering ended."""

    async def publish(self, due: list[Due], forgotten: list[str]) -> bool:
        """Answer `due`; `forgotten` users' answers must end before their tombstone.
        True when the broker refused some (they wait again, the publisher pauses)."""
