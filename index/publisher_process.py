"""A worker's publisher answering in a process of its own
(`STREAMREC_PUBLISHER_PROCESS`): the user tower, the index search and the
sending run beside the worker's event loop, on another core, instead of
taking turns with it (they were 40% of the loop under a burst).

The worker keeps what needs its tables: which users are due, their features,
the answers before the first model. It sends each due batch (the features
and the triggering event, msgpack) down a pipe. The process answers with its
own LiveModel, which follows the catalog and the model versions itself,
sends the answers with its own producer and reports each batch back, so the
worker's /status, /metrics and the demo show the same figures as before. At
most MAX_IN_FLIGHT batches wait in the process: past that the worker waits,
and users coalesce in its backlog instead of queueing in the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from foundation.features import UserFeatures
from foundation.kafka import KafkaConnection, start_producer
from foundation.settings import Settings
from foundation.topics import Topics
from index.publisher import ERROR_PAUSE_S, Due, Sent, send_answers

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4  # batches sent to the process and not yet reported
STARTUP_TIMEOUT_S = 300.0  # loading torch and faiss, building the current version's index
STOP_TIMEOUT_S = 10.0
REPORT_EVERY_S = 0.5  # how soon the worker hears of a new model version
TUNING_SAMPLE = 2_000  # the newest users answered: the index tuner's queries


class PublisherProcess:
    """The worker's end of the answering process."""

    def __init__(self, settings: Settings, kafka: KafkaConnection):
        context = multiprocessing.get_context("spawn")  # no copy of the worker's loop, threads and tables
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, settings, kafka), name="streamrec-publisher", daemon=True
        )
        self.version: str | None = None  # the version the process serves, None before the first model
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        """Start the process; back once its index is built (or no version exists yet)."""
        self._process.start()
        if not await asyncio.to_thread(self._pipe.poll, STARTUP_TIMEOUT_S):
            self._process.kill()
            raise RuntimeError(f"the publisher process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        self._take(self._receive(), lambda sent, errors: None)

    async def publish(self, due: list[Due], forgotten: list[str]) -> None:
        """Hand a batch over, and users whose answers must end with a
        tombstone; waits while MAX_IN_FLIGHT batches are unreported."""
        await self._slots.acquire()
        if not self._process.is_alive():  # `run` raises why; the publisher ends on it
            raise RuntimeError(f"the publisher process ended (exit code {self._process.exitcode})")
        batch = [(one.user.to_wire(), one.partition, one.event_id, one.event_ts) for one in due]
        await asyncio.to_thread(self._pipe.send_bytes, msgpack.packb({"due": batch, "forget": forgotten}))

    async def run(self, stop: asyncio.Event, record: Callable[[Sent, int], None]) -> None:
        """Take the process's reports into `record` until `stop`, then stop it;
        a process that ended raises here, and the worker ends with it."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self._pipe.fileno(), readable.set)
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(readable.wait(), REPORT_EVERY_S)
                except TimeoutError:
                    continue
                readable.clear()
                while self._pipe.poll():
                    self._take(self._receive(), record)
        finally:
            loop.remove_reader(self._pipe.fileno())
            await self._stop()
            for _ in range(MAX_IN_FLIGHT):  # a publish waiting for a report that will never come
                self._slots.release()

    def _receive(self) -> dict[str, Any]:
        try:
            return msgpack.unpackb(self._pipe.recv_bytes())
        except EOFError:
            raise RuntimeError(f"the publisher process ended (exit code {self._process.exitcode})") from None

    def _take(self, report: dict[str, Any], record: Callable[[Sent, int], None]) -> None:
        self.version = report["version"]
        if "sent" in report:
            refused = {user_id: tuple(note) for user_id, note in report["refused"].items()}
            record(Sent(report["sent"], report["at"], refused), report["errors"])
            for _ in range(report["batches"]):
                self._slots.release()

    async def _stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(BrokenPipeError):  # it died, and is not reaped yet
                self._pipe.send_bytes(b"")  # nothing more: the process stops
            await asyncio.to_thread(self._process.join, STOP_TIMEOUT_S)
        if self._process.is_alive():
            log.warning("the publisher process did not stop within %.0f s: killed", STOP_TIMEOUT_S)
            self._process.kill()


def _serve(pipe: Connection, settings: Settings, kafka: KafkaConnection) -> None:
    logging.basicConfig(level=logging.INFO, format="publisher: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        asyncio.run(_answer_when_asked(pipe, settings, kafka))
    except EOFError:
        pass  # the worker is gone: so is its publisher


async def _answer_when_asked(pipe: Connection, settings: Settings, kafka: KafkaConnection) -> None:
    from index.live import LiveModel  # torch and faiss load here, not in the worker

    answered: deque[UserFeatures] = deque(maxlen=TUNING_SAMPLE)
    live = LiveModel(settings, sample_users=lambda n: list(answered)[-n:])
    await live.start(kafka)
    producer = await start_producer(kafka, linger_ms=5, max_batch_size=1024 * 1024)
    topic = Topics.from_settings(settings).recommendations
    stop, lost = asyncio.Event(), [0]

    def delivered(delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            lost[0] += 1

    def report(**batch: Any) -> None:
        pipe.send_bytes(msgpack.packb({"version": live.version, **batch}))

    follow = asyncio.create_task(live.follow(stop))
    tell_version = asyncio.create_task(_tell_new_versions(live, report, stop))
    report()
    try:
        while batches := await _waiting_batches(pipe):
            due = [Due(UserFeatures.from_wire(wire), *note) for batch in batches for wire, *note in batch["due"]]
            answered.extend(one.user for one in due)
            sent = Sent({}, time.monotonic())
            if due and (current := live.current) is not None:  # the worker sends users once a version is served
                answers = current.recommend_many([one.user for one in due], settings.publish_k,
                                                 explain=settings.publish_explanations)  # fmt: skip
                sent = await send_answers(producer, topic, due, answers, current.version.version, delivered)
            for user_id in (user_id for batch in batches for user_id in batch["forget"]):
                (await producer.send(topic, None, key=user_id.encode())).add_done_callback(delivered)
            errors, lost[0] = lost[0], 0
            report(sent=sent.latencies_ms, at=sent.sent_at, refused=sent.refused, errors=errors, batches=len(batches))
            if sent.refused:
                await asyncio.sleep(ERROR_PAUSE_S)
    finally:
        stop.set()
        await asyncio.gather(follow, tell_version, return_exceptions=True)
        await live.stop()
        await producer.stop()


async def _waiting_batches(pipe: Connection) -> list[dict[str, list]]:
    """The next batch and those queued behind it (at most MAX_IN_FLIGHT),
    answered together: one tower pass and one search for more users costs
    less per user. Empty when the worker said it is done."""
    batches = [await asyncio.to_thread(pipe.recv_bytes)]
    while len(batches) < MAX_IN_FLIGHT and batches[-1] and pipe.poll():
        batches.append(pipe.recv_bytes())
    if not batches[-1]:
        return []
    return [msgpack.unpackb(batch) for batch in batches]


async def _tell_new_versions(live: Any, report: Callable[..., None], stop: asyncio.Event) -> None:
    told = live.version
    while not stop.is_set():
        await asyncio.sleep(REPORT_EVERY_S)
        if live.version != told:
            told = live.version
            report()
