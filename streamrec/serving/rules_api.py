"""The placements' rules over HTTP: anyone with a read key lists them, an
admin key changes them. A change is written to the rules topic (signed with
the admin key the server holds, so every process applies it) and answered
once this server applies it: the next answer here follows the new rule."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from streamrec.foundation.http import Access
from streamrec.foundation.kafka import KafkaConnection, start_producer
from streamrec.foundation.rules import PLACEMENT_PATTERN, Rule, rule_record, signed_bytes
from streamrec.foundation.topics import Topics
from streamrec.serving.live import LiveModel

APPLIED_WITHIN_S = 10.0  # a written change not applied here by then is answered 504 (it may still apply)


class PlacementRule(BaseModel):
    placement: str
    rule: Rule | None


class RuleWriter:
    """Writes rules and their tombstones to the rules topic, with a producer started at the first change."""

    def __init__(self, kafka: KafkaConnection, topics: Topics, access: Access):
        self.kafka, self.topic, self.access = kafka, topics.rules, access
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def write(self, placement: str, rule: Rule | None) -> None:
        async with self._starting:
            if self._producer is None:
                self._producer = await start_producer(self.kafka)
        value = None if rule is None else rule_record(rule, self.access.sign_for("rule", signed_bytes(placement, rule)))
        await self._producer.send_and_wait(self.topic, value, key=placement.encode())

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def rules_router(live: LiveModel, writer: RuleWriter | None, access: Access) -> APIRouter:
    router = APIRouter()
    placement_path = Path(..., pattern=PLACEMENT_PATTERN, description="A placement: letters, digits, _ . -")

    @router.get("/rules", summary="Every placement's rule", dependencies=[Depends(access.require("read"))])
    async def every_rule() -> list[PlacementRule]:
        return [PlacementRule(placement=name, rule=rule) for name, rule in sorted(live.rules.rules.items())]

    @router.get("/rules/{placement}", summary="A placement's rule", dependencies=[Depends(access.require("read"))])
    async def one_rule(placement: str = placement_path) -> PlacementRule:
        rule = live.rules.get(placement)
        if rule is None:
            raise HTTPException(404, f"placement {placement!r} has no rule: its answers are the model's")
        return PlacementRule(placement=placement, rule=rule)

    @router.put(
        "/rules/{placement}",
        summary="Set a placement's rule (admin): in force here when answered, everywhere within seconds",
        dependencies=[Depends(access.require("admin"))],
    )
    async def set_rule(rule: Rule, placement: str = placement_path) -> PlacementRule:
        await _written(live, writer, placement, rule)
        return PlacementRule(placement=placement, rule=rule)

    @router.delete(
        "/rules/{placement}",
        summary="Remove a placement's rule (admin)",
        dependencies=[Depends(access.require("admin"))],
    )
    async def remove_rule(placement: str = placement_path) -> PlacementRule:
        await _written(live, writer, placement, None)
        return PlacementRule(placement=placement, rule=None)

    return router


async def _written(live: LiveModel, writer: RuleWriter | None, placement: str, rule: Rule | None) -> None:
    """Write the change and wait until this server's rule book holds it."""
    if writer is None:
        raise HTTPException(503, "this server does not write rules (no Kafka connection)")
    try:
        await writer.write(placement, rule)
    except KafkaError as exc:
        raise HTTPException(503, f"the rules topic did not take the change: {exc}") from None
    deadline = time.monotonic() + APPLIED_WITHIN_S
    while live.rules.get(placement) != rule:
        if time.monotonic() > deadline:
            raise HTTPException(504, f"the rule was written but not applied here within {APPLIED_WITHIN_S:.0f} s")
        await asyncio.sleep(0.02)
