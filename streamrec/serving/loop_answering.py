"""The model's answers on the worker's own event loop
(`STREAMREC_PUBLISHER_PROCESSES=0`), between its batches: the index is never
searched while catalog changes are added to it, and no second process loads
torch and the index."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from streamrec.serving.answers import Due, Report, Sent, send_answers
from streamrec.serving.live import LiveModel


class LoopAnswering:
    """Answers with the worker's own LiveModel, sent by the worker's producer."""

    on_worker_loop = True

    def __init__(
        self,
        live: LiveModel,
        producer: AIOKafkaProducer,
        topic: str,
        report: Report,
        *,
        k: int,
        explain: bool,
        placement: str,
    ):
        self.live, self.producer, self.topic, self.report = live, producer, topic, report
        self.k, self.explain, self.placement = k, explain, placement

    @property
    def version(self) -> str | None:
        return self.live.version

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.live.follow(stop)
        finally:
            await self.live.stop()

    async def publish(self, due: list[Due], forgotten: list[str]) -> bool:
        """The worker's own tombstone ends a forgotten user's answers: nothing to do for them here."""
        if not due:
            return False
        current = self.live.current
        assert current is not None, "the publisher hands users over only while a version is served"
        rule = self.live.rule(self.placement)
        answers = current.recommend_many([one.user for one in due], self.k, explain=self.explain, rule=rule)
        sent = await send_answers(
            self.producer, self.topic, due, answers, current.version.version, self._lost, placement=self.placement
        )
        self.report(sent, 0)
        return bool(sent.refused)

    def _lost(self, count: int) -> None:
        self.report(Sent({}, time.monotonic()), count)
