"""What the rules and experiments endpoints share: a change is written to
its topic (signed with the admin key the server holds, so every process
applies it) and answered once this server applies it, so the next answer
here follows it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import HTTPException, Path
from pydantic import BaseModel

from streamrec.foundation.http import Access
from streamrec.foundation.kafka import KafkaConnection, start_producer
from streamrec.foundation.placement_book import PLACEMENT_PATTERN, PlacementBook, placement_record, signed_bytes

APPLIED_WITHIN_S = 10.0  # a written change not applied here by then is answered 504 (it may still apply)


def placement_path() -> Any:
    return Path(..., pattern=PLACEMENT_PATTERN, description="A placement: letters, digits, _ . -")


class PlacementWriter:
    """Writes values and their tombstones to a book's topic, with a producer started at the first change."""

    def __init__(self, kafka: KafkaConnection, access: Access):
        self.kafka, self.access = kafka, access
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def write(self, book: PlacementBook, placement: str, value: BaseModel | None) -> None:
        async with self._starting:
            if self._producer is None:
                self._producer = await start_producer(self.kafka)
        record = None
        if value is not None:
            record = placement_record(book.kind, value, self.access.sign_for(book.kind, signed_bytes(placement, value)))
        await self._producer.send_and_wait(book.topic, record, key=placement.encode())

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


async def write_and_apply(
    book: PlacementBook, writer: PlacementWriter, placement: str, value: BaseModel | None
) -> None:
    """Write the change and wait until this server's book holds it."""
    kind = book.kind
    try:
        await writer.write(book, placement, value)
    except KafkaError as exc:
        raise HTTPException(503, f"the {kind}s topic did not take the change: {exc}") from None
    deadline = time.monotonic() + APPLIED_WITHIN_S
    while book.get(placement) != value:
        if time.monotonic() > deadline:
            raise HTTPException(504, f"the {kind} was written but not applied here within {APPLIED_WITHIN_S:.0f} s")
        await asyncio.sleep(0.02)
