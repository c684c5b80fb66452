"""Helpers for tests against a real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import TopicPartition

from foundation.kafka import read_to_end, reader
from foundation.settings import Settings
from streams.worker import StreamWorker


async def until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


class RunningWorker:
    """A StreamWorker running in this event loop until `stop()` or `crash()`."""

    def __init__(self, settings: Settings, bootstrap: str):
        self.worker = StreamWorker(settings, bootstrap)
        self.task: asyncio.Task | None = None

    async def start(self) -> RunningWorker:
        await self.worker.start()
        self.task = asyncio.create_task(self.worker.run())
        return self

    async def stop(self) -> None:
        """A clean shutdown: flush, commit, leave the group."""
        self.worker.stop()
        await self.task
        await self.worker.close()

    async def crash(self) -> None:
        """Stop without flushing tables or committing offsets, as a killed process would."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.abort()


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list:
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
