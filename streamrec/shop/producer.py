"""A producer client for shop code: click(), purchase(), upsert_item().

Records are validated before they leave (a mistake raises here, in the shop's
code, rather than landing in the dead-letter topic), keyed by user (events) or
item (catalog), partitioned the way Kafka's Java client does, packed into
per-partition record batches, and sent with acks=all by an idempotent
producer where the broker allows one. `close()` (or leaving `async with`)
flushes and waits for every ack.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from foundation.codec import encode
from foundation.kafka import partition_for, start_producer
from foundation.schema import Event, Item, Limits, validate_event, validate_item
from foundation.settings import Settings
from foundation.topics import Topics, ensure_topics


class ShopProducer:
    """Send shop events and catalog items to streamrec's topics."""

    def __init__(self, bootstrap: str, settings: Settings | None = None, *, linger_ms: int = 10):
        self.settings = settings or Settings()
        self.bootstrap = bootstrap
        self.topics = Topics.from_settings(self.settings)
        self.limits = Limits.from_settings(self.settings)
        self._producer: AIOKafkaProducer | None = None
        self._linger_ms = linger_ms
        self._batches: dict[tuple[str, int], Any] = {}
        self._in_flight: set[asyncio.Future] = set()
        self._partitions: dict[str, int] = {}
        self._linger_task: asyncio.Task | None = None
        self.sent = 0

    async def start(self) -> ShopProducer:
        await ensure_topics(self.settings, self.bootstrap)
        self._producer = await start_producer(self.bootstrap, linger_ms=self._linger_ms, max_batch_size=512 * 1024)
        for topic in (*self.topics.events, self.topics.catalog):
            self._partitions[topic] = len(await self._producer.partitions_for(topic))
        self._linger_task = asyncio.create_task(self._linger())
        return self

    async def __aenter__(self) -> ShopProducer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the shop's calls ---------------------------------------------------

    async def click(self, user_id: str, item_id: str, **fields: Any) -> Event:
        """A click; optional fields: ts, event_id, session_id, price, query."""
        return await self.send_event(self._event("click", user_id, item_id, fields))

    async def purchase(self, user_id: str, item_id: str, **fields: Any) -> Event:
        """A purchase; optional fields: ts, event_id, session_id, price, quantity."""
        return await self.send_event(self._event("purchase", user_id, item_id, fields))

    async def upsert_item(self, item_id: str, title: str, category: str, **fields: Any) -> Item:
        """Create or replace a catalog item; optional: price, in_stock, ts, attributes."""
        item = validate_item({"item_id": item_id, "title": title, "category": category, **fields}, self.limits)
        return await self.send_item(item)

    async def send_item(self, item: Item) -> Item:
        await self._append(self.topics.catalog, item.item_id, encode(item.to_wire()))
        return item

    async def send_catalog(self, items: Iterable[Item]) -> None:
        """Send items and wait for their acks: events sent afterwards find them
        in the catalog (a worker reads it to its end before its first event)."""
        for item in items:
            await self.send_item(item)
        await self.flush()

    async def send_event(self, event: Event) -> Event:
        topic = self.topics.purchases if event.type == "purchase" else self.topics.clicks
        await self._append(topic, event.user_id, encode(event.to_wire()))
        return event

    async def flush(self) -> None:
        """Send every open batch and wait until the broker acknowledged all."""
        await self._send_open_batches()
        if self._in_flight:
            await asyncio.gather(*self._in_flight)

    async def close(self) -> None:
        try:
            if self._linger_task is not None:
                self._linger_task.cancel()
            await self.flush()
        finally:
            if self._producer is not None:
                await self._producer.stop()

    # --- internals ----------------------------------------------------------

    def _event(self, kind: str, user_id: str, item_id: str, fields: dict[str, Any]) -> Event:
        wire = {"type": kind, "user_id": user_id, "item_id": item_id, **fields}
        wire.setdefault("event_id", uuid.uuid4().hex)
        wire.setdefault("ts", time.time())
        return validate_event(wire, self.limits)

    async def _append(self, topic: str, key: str, value: bytes) -> None:
        partition = partition_for(key, self._partitions[topic])
        batch = self._batches.get((topic, partition))
        if batch is None:
            batch = self._batches[(topic, partition)] = self._producer.create_batch()
        key_bytes = key.encode()
        if batch.append(key=key_bytes, value=value, timestamp=None) is None:
            # Replace the full batch before awaiting, so the linger task cannot send it twice.
            full, batch = batch, self._producer.create_batch()
            self._batches[(topic, partition)] = batch
            batch.append(key=key_bytes, value=value, timestamp=None)
            await self._send(topic, partition, full)
        self.sent += 1

    async def _linger(self) -> None:
        """Open batches leave at the latest `linger_ms` after they were opened."""
        while True:
            await asyncio.sleep(self._linger_ms / 1000)
            await self._send_open_batches()

    async def _send_open_batches(self) -> None:
        batches, self._batches = self._batches, {}
        for (topic, partition), batch in batches.items():
            await self._send(topic, partition, batch)

    async def _send(self, topic: str, partition: int, batch: Any) -> None:
        if not batch.record_count():
            return
        batch.close()
        future = await self._producer.send_batch(batch, topic, partition=partition)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
