"""Helpers for tests against a real broker."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

from streamrec.foundation.codec import decode
from streamrec.foundation.kafka import KafkaConnection, read_to_end, reader
from streamrec.foundation.settings import Settings
from streamrec.streams.engines import stream_worker
from streamrec.streams.state import WorkerConfig


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    """Wait for `condition` (a plain or an async callable) to hold, polling."""
    deadline = time.monotonic() + timeout_s
    while not await _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return bool(await result if inspect.isawaitable(result) else result)


class RunningWorker:
    """A worker of `settings.engine` running in this event loop until `stop()` or `crash()`."""

    unfinished: list[RunningWorker] = []  # started, neither stopped nor crashed

    def __init__(self, settings: Settings, bootstrap: KafkaConnection):
        self.worker = stream_worker(WorkerConfig.from_settings(settings), bootstrap)
        self.task: asyncio.Task | None = None

    async def start(self) -> RunningWorker:
        await self.worker.start()
        self.task = asyncio.create_task(self.worker.run())
        self.unfinished.append(self)
        return self

    async def stop(self) -> None:
        """A clean shutdown: flush, commit, leave the group."""
        self.unfinished.remove(self)
        self.worker.stop()
        await self.task
        await self.worker.close()

    def hold_commits(self) -> None:
        """From now on write no changelog and commit no offsets: a crash then
        leaves everything since to be redelivered."""
        worker = self.worker
        if worker.settings.worker.engine == "faust":
            worker.hold_commits()
        else:
            held = dataclasses.replace(worker.settings.worker, commit_interval_s=3600)
            worker.settings = dataclasses.replace(worker.settings, worker=held)

    async def crash(self) -> None:
        """Stop without flushing tables or committing offsets, as a killed process would."""
        self.unfinished.remove(self)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.abort()


def run_scenario(scenario: Callable[[], Awaitable[None]]) -> None:
    """asyncio.run(scenario()), then crash what a failed assertion left
    running (a Faust app's consumer thread outlives its event loop)."""

    async def guarded() -> None:
        try:
            await scenario()
        finally:
            for running in list(RunningWorker.unfinished):
                await running.crash()

    asyncio.run(guarded())


async def read_topic(bootstrap: KafkaConnection, topic: str, partitions: int) -> list:
    consumer = reader(bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list = []
        await read_to_end(consumer, tps, lambda tp, batch: records.extend(batch))
        return records
    finally:
        await consumer.stop()


def end_process(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop a worker process the test started (resumed first, if it was stopped);
    SIGKILL if it outlives `timeout_s`, so that no failed test leaves one running."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Recommendations:
    """Every message on recs.recommendations, read as it arrives."""

    def __init__(self, bootstrap: KafkaConnection, topic: str, partitions: int):
        self.consumer = reader(bootstrap)
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.received: list[dict] = []
        self.task: asyncio.Task | None = None
        self.bootstrap = bootstrap

    async def start(self) -> Recommendations:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=20)).values():
                for record in records:
                    message = decode(record.value)
                    assert record.key.decode() == message["user_id"]
                    self.received.append(message)

    def for_user(self, user_id: str, trigger: str | None = None) -> list[dict]:
        return [
            m
            for m in self.received
            if m["user_id"] == user_id and (trigger is None or m["trigger_event_id"] == trigger)
        ]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
