"""The real-time publisher, with fakes for the index and the producer."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field

from aiokafka.errors import KafkaTimeoutError

from streamrec.foundation.codec import decode
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.popular import LivePopularity
from streamrec.foundation.schema import ScoredItem
from streamrec.serving.answers import Due
from streamrec.serving.loop_answering import LoopAnswering
from streamrec.serving.publisher import RecommendationPublisher
from streamrec.serving.publisher_process import PublisherProcesses, _waiting_batches, owner


@dataclass
class FakeIndex:
    """Answers every user with one item named after them."""

    version: object = field(default_factory=lambda: type("V", (), {"version": "v1"})())
    searches: list[list[str]] = field(default_factory=list)

    def recommend_many(
        self, users: list[UserFeatures], k: int, *, explain: bool = False, rule: None = None
    ) -> list[list[ScoredItem]]:
        self.searches.append([u.user_id for u in users])
        return [[ScoredItem(f"for-{u.user_id}", 1.0)] for u in users]


@dataclass
class FakeLive:
    current: FakeIndex | None = field(default_factory=FakeIndex)

    @property
    def version(self) -> str | None:
        return None if self.current is None else self.current.version.version

    def rule(self, placement: str) -> None:
        return None

    async def follow(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def stop(self) -> None:
        pass


class FakeBatch:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None):
        if len(self.records) == self.capacity:
            return None
        self.records.append((key, value))
        return object()  # aiokafka's record metadata


class FakeProducer:
    """Record batches of `capacity` answers (1: each answer its own, refused or lost alone)."""

    def __init__(self, partitions: int = 1, capacity: int = 1):
        self.partitions, self.capacity = partitions, capacity
        self.sent: list[tuple[str, dict, bytes]] = []
        self.batches: list[tuple[int, list[bytes]]] = []  # partition, keys
        self.refuse: set[bytes] = set()  # keys whose batch's send raises at once
        self.lose: set[bytes] = set()  # keys whose batch is sent but never acknowledged

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int):
        keys = [key for key, _ in batch.records]
        if self.refuse & set(keys):
            raise KafkaTimeoutError("buffer full")
        self.sent += [(topic, decode(value), key) for key, value in batch.records]
        self.batches.append((partition, keys))
        done = asyncio.get_running_loop().create_future()
        done.set_exception(KafkaTimeoutError("no ack")) if self.lose & set(keys) else done.set_result(None)
        return done


def _publisher(
    live: FakeLive | None, held: set[str] | None = None, answering=None, **options
) -> tuple[RecommendationPublisher, FakeProducer]:
    """A publisher answering on its loop with `live` (or with `answering`),
    whose worker holds every user in `held` (all, by default)."""
    producer = FakeProducer()
    if answering is None:
        answering = functools.partial(LoopAnswering, live, producer, "recs", k=10, explain=False, placement="default")

    def features(partition: int, user_id: str) -> UserFeatures | None:
        return UserFeatures(user_id) if held is None or user_id in held else None

    fallback = LivePopularity(lambda: {"mug": 3.0, "pan": 9.0}, {}, 3600.0, exclude_clicked=False)
    options = {"interval_s": 0.5, **options}
    return RecommendationPublisher(answering, features, producer, "recs", fallback, **options), producer


def test_a_burst_gives_one_publish_now_and_one_on_the_newest_state_later():
    publisher, producer = _publisher(FakeLive())
    publisher.note({"u1": (0, "e1", 1.0), "u2": (1, "e2", 1.0)})
    asyncio.run(publisher.publish(publisher.due(time.monotonic())))
    assert sorted(key for _, _, key in producer.sent) == [b"u1", b"u2"] and publisher.waiting == 0

    publisher.note({"u1": (0, "e3", 2.0)})
    publisher.note({"u1": (0, "e4", 3.0)})  # folded into the same pending publish
    assert publisher.status.coalesced == 1
    assert publisher.due(time.monotonic()) == []  # within the interval: wait
    assert publisher.due(time.monotonic() + 0.5) == ["u1"]
    asyncio.run(publisher.publish(["u1"]))
    topic, message, key = producer.sent[-1]
    assert (topic, key, message["trigger_event_id"]) == ("recs", b"u1", "e4")  # the newest state
    assert message["items"] == [{"item_id": "for-u1", "score": 1.0}] and message["model_version"] == "v1"
    assert publisher.status.published == 3


def test_without_a_model_the_answer_is_live_popularity_and_says_so():
    publisher, producer = _publisher(FakeLive(current=None))
    publisher.note({"u1": (0, "e1", 1.0)})
    asyncio.run(publisher.publish(publisher.due(time.monotonic())))
    _, message, _ = producer.sent[-1]
    assert message["model_version"] == "live-popularity" and publisher.status.without_model == 1
    assert [item["item_id"] for item in message["items"]] == ["pan", "mug"]


def test_a_user_whose_partition_moved_away_is_left_to_the_new_owner():
    publisher, producer = _publisher(FakeLive(), held={"u1"})
    publisher.note({"u1": (0, "e1", 1.0), "gone": (3, "e2", 1.0)})
    asyncio.run(publisher.publish(["u1", "gone"]))
    assert [key for _, _, key in producer.sent] == [b"u1"] and publisher.waiting == 0


def test_the_loop_publishes_in_batches_until_stopped():
    live = FakeLive()
    publisher, producer = _publisher(live, batch_size=2)

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(publisher.run(stop))
        publisher.note({f"u{n}": (0, f"e{n}", time.time()) for n in range(5)})
        deadline = time.monotonic() + 5
        while len(producer.sent) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stop.set()
        await running

    asyncio.run(scenario())
    assert sorted(key for _, _, key in producer.sent) == [f"u{n}".encode() for n in range(5)]
    assert [len(batch) for batch in live.current.searches] == [2, 2, 1]
    assert all(0 <= message["latency_ms"] < 5000 for _, message, _ in producer.sent)


def test_latency_percentiles_of_the_last_publishes():
    publisher, _ = _publisher(FakeLive())
    publisher.status.latencies_ms.extend([1000.0] * 10 + [5.0] * 100)
    assert publisher.status.percentiles(last=100) == (5.0, 5.0)
    assert publisher.status.percentiles()[1] > 5.0


def test_a_refused_answer_is_counted_and_the_user_answered_again_after_the_interval():
    publisher, producer = _publisher(FakeLive())
    producer.refuse, producer.lose = {b"u2"}, {b"u3"}
    publisher.note({"u1": (0, "e1", 1.0), "u2": (0, "e2", 1.0), "u3": (0, "e3", 1.0)})
    assert asyncio.run(_publish_due(publisher, time.monotonic())) is True  # refused: the loop pauses, goes on
    assert [key for _, _, key in producer.sent] == [b"u1"]  # u3 was behind the refused u2
    assert publisher.status.errors == 1 and publisher.waiting == 2
    assert publisher.due(time.monotonic()) == []  # refused ones wait an interval: no busy loop

    producer.refuse = set()
    assert asyncio.run(_publish_due(publisher, time.monotonic() + 0.5)) is False
    assert [key for _, _, key in producer.sent] == [b"u1", b"u2", b"u3"]
    view = publisher.view()  # u3's answer was sent but never acknowledged: a second error
    assert (view["errors"], view["backlog_users"], view["published"], view["model_version"]) == (2, 0, 3, "v1")


def test_answers_leave_in_one_record_batch_per_partition_of_their_users_keys():
    publisher, producer = _publisher(FakeLive())
    producer.partitions, producer.capacity = 3, 100
    users = {f"u{n}": (0, f"e{n}", 1.0) for n in range(20)}
    publisher.note(users)
    producer.lose = {b"u7"}  # its batch's answers all count as lost
    asyncio.run(_publish_due(publisher, time.monotonic()))
    assert len(producer.batches) == 3
    assert sorted(key for _, _, key in producer.sent) == sorted(user_id.encode() for user_id in users)
    for partition, keys in producer.batches:
        assert {partition_for(key.decode(), 3) for key in keys} == {partition}  # as Kafka's default partitioner
    lost = next(keys for _, keys in producer.batches if b"u7" in keys)
    assert publisher.status.errors == len(lost) > 1 and publisher.status.published == 20


async def _publish_due(publisher: RecommendationPublisher, now: float) -> bool:
    try:
        return await publisher.publish(publisher.due(now))
    finally:
        await asyncio.sleep(0)  # delivery callbacks run


def test_a_forgotten_user_waits_no_more():
    publisher, producer = _publisher(FakeLive())
    publisher.note({"u1": (0, "e1", 1.0), "u2": (0, "e2", 1.0)})
    publisher.note({}, ["u1"])
    asyncio.run(_publish_due(publisher, time.monotonic()))
    assert [key for _, _, key in producer.sent] == [b"u2"] and publisher.waiting == 0


class FakeProcess:
    """An answering process that serves v1 and keeps what it was handed."""

    version = "v1"
    on_worker_loop = False

    def __init__(self):
        self.handed: list[tuple[list[str], list[str]]] = []

    async def publish(self, due, forgotten: list[str]) -> bool:
        self.handed.append(([one.user.user_id for one in due], forgotten))
        return False


def test_with_answering_processes_the_due_and_the_forgotten_are_handed_over_together():
    process = FakeProcess()
    publisher, producer = _publisher(None, answering=lambda report: process)
    publisher.note({"u1": (0, "e1", 1.0), "u2": (0, "e2", 1.0)})
    publisher.note({}, ["u1"])  # its tombstone must follow whatever the process already answered
    assert asyncio.run(_publish_due(publisher, time.monotonic())) is False
    assert process.handed == [(["u2"], ["u1"])] and producer.sent == [] and publisher.model_version == "v1"


def test_each_user_is_always_handed_to_the_same_answering_process():
    """A user's answers and the tombstone that ends them leave from one process, in order."""
    fakes = [FakeProcess(), FakeProcess(), FakeProcess()]
    processes = PublisherProcesses(fakes, report=lambda sent, errors: None)
    users = [f"u{n}" for n in range(300)]
    due = [Due(UserFeatures(user_id), 0, "e", 1.0) for user_id in users]
    asyncio.run(processes.publish(due, []))
    asyncio.run(processes.publish(due[:10], users[:10]))
    handed = [[user_id for due_ids, forgotten in fake.handed for user_id in due_ids + forgotten] for fake in fakes]
    assert all(handed), "a process without a share"
    for n, its_users in enumerate(handed):
        assert {owner(user_id, 3) for user_id in its_users} == {n}
    assert sorted(user_id for its_users in handed for user_id in its_users) == sorted(users + users[:10] * 2)


def test_an_answering_process_answers_the_batches_taken_with_the_workers_end_before_it_stops():
    """At a clean stop the pipe's end can arrive behind batches read in the same turn."""

    async def turns() -> list[list[dict]]:
        asked: asyncio.Queue = asyncio.Queue()
        for message in ({"due": [1]}, {"due": [2]}, None):
            asked.put_nowait(message)
        return [await _waiting_batches(asked), await _waiting_batches(asked)]

    assert asyncio.run(turns()) == [[{"due": [1]}, {"due": [2]}], []]
