"""A worker's publisher answering in processes of their own
(`STREAMREC_PUBLISHER_PROCESSES`): the user tower, the index search and the
sending run beside the worker's event loop, on other cores, instead of
taking turns with it (they were 40% of the loop under a burst).

The worker keeps what needs its tables: which users are due, their features,
the answers before the first model. It sends each due batch (the features
and the triggering event, msgpack) down a pipe. Each process answers with its
own LiveModel, which follows the catalog and the model versions itself,
sends the answers with its own producer and reports each batch back, so the
worker's /status, /metrics and the demo show the same figures as before.
With several processes each user belongs to one (a hash of the id), so a
user's answers, and the tombstone that ends them, leave in order. At most
MAX_IN_FLIGHT batches wait in a process: past that the worker waits, and
users coalesce in its backlog instead of queueing in the pipe.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from streamrec.foundation.features import UserFeatures
from streamrec.foundation.kafka import KafkaConnection, start_producer
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics
from streamrec.serving.answers import ERROR_PAUSE_S, Due, Report, Sent, count_if_lost, send_answers

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16  # batches sent to the process and not yet reported: the work of a commit's pause
ANSWERED_TOGETHER = MAX_IN_FLIGHT // 2  # the rest are handed over while these are answered
LENGTH = struct.Struct("!I")  # each message on the pipe: its length, then msgpack
STARTUP_TIMEOUT_S = 300.0  # loading torch and faiss, building the current version's index
STOP_TIMEOUT_S = 10.0
REPORT_EVERY_S = 0.5  # how soon the worker hears of a new model version
TUNING_SAMPLE = 2_000  # the newest users answered: the index tuner's queries


class PublisherProcesses:
    """The worker's end of its answering processes: each user's batch goes to
    the process that owns the user."""

    on_worker_loop = False

    def __init__(self, processes: list[AnsweringProcess], report: Report):
        self._processes = processes
        self._report = report

    @classmethod
    def spawn(cls, settings: Settings, kafka: KafkaConnection, report: Report) -> PublisherProcesses:
        """`publisher_processes` of them, not started yet; with several, they
        share the cores' threads. Each is given the settings, as a process
        started on its own would be (it is the composition root of its answers)."""
        count = settings.publisher.processes
        threads = max(1, (os.cpu_count() or 1) // count) if count > 1 else None  # torch's and faiss's, each
        return cls([AnsweringProcess(settings, kafka, threads) for _ in range(count)], report)

    @property
    def version(self) -> str | None:
        """The oldest version a process serves (they swap one by one), None before all serve one."""
        versions = [process.version for process in self._processes if process.version is not None]
        return min(versions) if len(versions) == len(self._processes) else None

    async def publish(self, due: list[Due], forgotten: list[str]) -> bool:
        """Each process gets its users' share of the batch (`AnsweringProcess.publish`);
        what they send comes back through `run`'s reports, refusals included."""
        count = len(self._processes)
        shares: list[tuple[list[Due], list[str]]] = [([], []) for _ in range(count)]
        for one in due:
            shares[owner(one.user.user_id, count)][0].append(one)
        for user_id in forgotten:
            shares[owner(user_id, count)][1].append(user_id)
        for process, (its_due, its_forgotten) in zip(self._processes, shares, strict=True):
            if its_due or its_forgotten:
                await process.publish(its_due, its_forgotten)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Start every process and take its reports until `stop`; one that
        ends stops the others, and this raises why. Until all serve a version
        the worker answers from live popularity itself."""
        halt = asyncio.Event()  # the worker's stop, or a process's end
        running = [asyncio.create_task(process.run(halt, self._report)) for process in self._processes]
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({*running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            stopping.cancel()
            ended = await asyncio.gather(*running, return_exceptions=True)
        for why in ended:
            if isinstance(why, BaseException):
                raise why


def owner(user_id: str, processes: int) -> int:
    """The answering process of a user: the same for all of the user's answers."""
    return zlib.crc32(user_id.encode()) % processes


class AnsweringProcess:
    """The worker's end of one answering process."""

    def __init__(self, settings: Settings, kafka: KafkaConnection, threads: int | None):
        context = multiprocessing.get_context("spawn")  # no copy of the worker's loop, threads and tables
        self._pipe, self._child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self._child_end, settings, kafka.to_child(), threads),
            name="streamrec-publisher",
            daemon=True,
        )
        self.version: str | None = None  # the version the process serves, None before the first model
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._writer: asyncio.StreamWriter | None = None

    async def _start(self) -> asyncio.StreamReader:
        """Start the process; back, with the reports' end of the pipe, once its
        index is built (or no version exists yet)."""
        self._process.start()
        self._child_end.close()  # the child's now: its death reads as the pipe's end here
        reader, self._writer = await open_pipe(self._pipe)
        try:
            first = await asyncio.wait_for(read_message(reader), STARTUP_TIMEOUT_S)
        except TimeoutError:
            self._process.kill()
            raise RuntimeError(f"the publisher process did not start within {STARTUP_TIMEOUT_S:.0f} s") from None
        self._take(self._ended_if_none(first), lambda sent, errors: None)
        return reader

    async def publish(self, due: list[Due], forgotten: list[str]) -> None:
        """Hand a batch over, and users whose answers must end with a
        tombstone; waits while MAX_IN_FLIGHT batches are unreported. The
        write never blocks: at most MAX_IN_FLIGHT batches wait in the pipe.
        Users are handed over only once it serves a version; before it
        started it answered no one, so a forgotten user needs nothing from it."""
        if self._writer is None:
            return
        await self._slots.acquire()
        if not self._process.is_alive():  # `run` raises why; the publisher ends on it
            raise RuntimeError(f"the publisher process ended (exit code {self._process.exitcode})")
        batch = [(one.user.to_wire(), one.partition, one.event_id, one.event_ts) for one in due]
        write_message(self._writer, {"due": batch, "forget": forgotten})

    async def run(self, stop: asyncio.Event, record: Report) -> None:
        """Start the process and take its reports into `record` until `stop`,
        then stop it; a process that ended raises here, and the worker ends with it."""
        serving = asyncio.create_task(self._take_reports(record))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()
        finally:
            serving.cancel()
            stopping.cancel()
            await self._stop()
            for _ in range(MAX_IN_FLIGHT):  # a publish waiting for a report that will never come
                self._slots.release()

    async def _take_reports(self, record: Report) -> None:
        reader = await self._start()
        while True:
            self._take(self._ended_if_none(await read_message(reader)), record)

    def _ended_if_none(self, report: dict[str, Any] | None) -> dict[str, Any]:
        if report is None:
            raise RuntimeError(f"the publisher process ended (exit code {self._process.exitcode})")
        return report

    def _take(self, report: dict[str, Any], record: Report) -> None:
        self.version = report["version"]
        if "sent" in report:
            refused = {user_id: tuple(note) for user_id, note in report["refused"].items()}
            record(Sent(report["sent"], report["at"], refused), report["errors"])
            for _ in range(report["batches"]):
                self._slots.release()

    async def _stop(self) -> None:
        if self._writer is not None:
            self._writer.close()  # the pipe's end: the process answers what it has, then stops
        if self._process.is_alive():
            await asyncio.to_thread(self._process.join, STOP_TIMEOUT_S)
        if self._process.is_alive():
            log.warning("the publisher process did not stop within %.0f s: killed", STOP_TIMEOUT_S)
            self._process.kill()


async def open_pipe(end: Connection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One end of a duplex pipe (a Unix socket pair) as asyncio streams:
    a write never blocks the loop, a read waits without a thread."""
    pipe = socket.socket(fileno=os.dup(end.fileno()))
    end.close()
    return await asyncio.open_unix_connection(sock=pipe)


def write_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    payload = msgpack.packb(message)
    writer.write(LENGTH.pack(len(payload)) + payload)


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message; None when the other end closed the pipe (or died)."""
    try:
        length = LENGTH.unpack(await reader.readexactly(LENGTH.size))[0]
        return msgpack.unpackb(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None


def _serve(pipe: Connection, settings: Settings, kafka_sent: tuple[str, dict[str, bool]], threads: int | None) -> None:
    kafka = KafkaConnection.from_parent(settings.kafka, kafka_sent)
    logging.basicConfig(level=logging.INFO, format="publisher: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if threads:  # several processes share the cores
        import faiss
        import torch

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    asyncio.run(_answer_when_asked(pipe, settings, kafka))


async def _answer_when_asked(pipe: Connection, settings: Settings, kafka: KafkaConnection) -> None:
    from streamrec.serving.live import LiveConfig, LiveModel  # torch and faiss load here, not in the worker

    reader, writer = await open_pipe(pipe)
    answered: deque[UserFeatures] = deque(maxlen=TUNING_SAMPLE)
    live = LiveModel(LiveConfig.from_settings(settings), sample_users=lambda n: list(answered)[-n:])
    await live.start(kafka)
    producer = await start_producer(kafka, linger_ms=5, max_batch_size=1024 * 1024)
    topic, publisher = Topics.from_settings(settings.kafka).recommendations, settings.publisher
    stop, lost = asyncio.Event(), [0]

    def lose(count: int) -> None:
        lost[0] += count

    def report(**batch: Any) -> None:
        write_message(writer, {"version": live.version, **batch})

    follow = asyncio.create_task(live.follow(stop))
    tell_version = asyncio.create_task(_tell_new_versions(live, report, stop))
    asked: asyncio.Queue[dict[str, list] | None] = asyncio.Queue()
    reading = asyncio.create_task(_read_batches(reader, asked))
    report()
    try:
        while batches := await _waiting_batches(asked):
            due = [Due(UserFeatures.from_wire(wire), *note) for batch in batches for wire, *note in batch["due"]]
            answered.extend(one.user for one in due)
            sent = Sent({}, time.monotonic())
            if due and (current := live.current) is not None:  # the worker sends users once a version is served
                users, rule = [one.user for one in due], live.rule(publisher.placement)
                answers = current.recommend_many(users, publisher.k, explain=publisher.explanations, rule=rule)
                version = current.version.version
                sent = await send_answers(producer, topic, due, answers, version, lose, placement=publisher.placement)
            for user_id in (user_id for batch in batches for user_id in batch["forget"]):
                (await producer.send(topic, None, key=user_id.encode())).add_done_callback(count_if_lost(lose, 1))
            errors, lost[0] = lost[0], 0
            report(sent=sent.latencies_ms, at=sent.sent_at, refused=sent.refused, errors=errors, batches=len(batches))
            if sent.refused:
                await asyncio.sleep(ERROR_PAUSE_S)
    finally:
        stop.set()
        reading.cancel()
        await asyncio.gather(follow, tell_version, reading, return_exceptions=True)
        await live.stop()
        await producer.stop()
        writer.close()


async def _read_batches(reader: asyncio.StreamReader, asked: asyncio.Queue) -> None:
    """The worker's batches as they come, while the last ones are answered;
    None once the worker closed the pipe (stopped, or died)."""
    while (batch := await read_message(reader)) is not None:
        asked.put_nowait(batch)
    asked.put_nowait(None)


async def _waiting_batches(asked: asyncio.Queue) -> list[dict[str, list]]:
    """The next batch and those queued behind it (at most ANSWERED_TOGETHER),
    answered together: one tower pass and one search for more users costs
    less per user. Empty when the worker is gone; batches taken together with
    its end are answered first, and the end comes on the next call."""
    batches = [await asked.get()]
    while len(batches) < ANSWERED_TOGETHER and batches[-1] is not None and not asked.empty():
        batches.append(asked.get_nowait())
    if batches[-1] is None:
        batches.pop()
        asked.put_nowait(None)
    return batches


async def _tell_new_versions(live: Any, report: Callable[..., None], stop: asyncio.Event) -> None:
    told = live.version
    while not stop.is_set():
        await asyncio.sleep(REPORT_EVERY_S)
        if live.version != told:
            told = live.version
            report()
