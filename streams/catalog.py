"""The whole catalog in every worker: a global table over the compacted catalog topic.

Events are partitioned by user, yet folding a click into the user's category
affinity needs the item's category, whichever partition the item lives in. So
each worker reads every partition of `shop.catalog` (no consumer group), the
way a Faust GlobalTable does; the topic itself is the changelog.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codec import decode_values
from streams.kafka import read_to_end, reader
from streams.schema import InvalidRecord, Item, Limits, validate_item

log = logging.getLogger(__name__)


class CatalogView:
    """Latest valid version of every catalog item, kept current by polling."""

    def __init__(self, topic: str, limits: Limits):
        self.topic = topic
        self.limits = limits
        self.items: dict[str, Item] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def category_of(self, item_id: str) -> str | None:
        item = self.items.get(item_id)
        return None if item is None else item.category

    async def start(self, bootstrap: str) -> None:
        """Read the catalog up to its current end before any event is processed,
        so that a replay's catalog (sent first) is known to the first click."""
        self._consumer = reader(bootstrap)
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic) or {0}
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        await read_to_end(self._consumer, tps, lambda tp, records: self._apply_all(records))
        log.info("catalog: %d items loaded", len(self.items))

    async def poll(self, timeout_ms: int = 0) -> int:
        """Apply whatever catalog records have arrived; returns how many."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=50_000)
        return sum(self._apply_all(records) for records in batches.values())

    def _apply_all(self, records: list) -> int:
        for record in records:
            self.apply(record.key, record.value)
        return len(records)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.items.pop(key.decode(errors="replace"), None)
            return
        # Invalid records are skipped here: the worker owning the partition
        # dead-letters them (the same decoding and bounds decide both).
        try:
            values = decode_values(value, self.limits)
        except InvalidRecord as exc:
            log.debug("catalog: skipping undecodable record: %s", exc)
            return
        for element in values:
            try:
                item = validate_item(element, self.limits)
            except InvalidRecord as exc:
                log.debug("catalog: skipping invalid item: %s", exc)
                continue
            self.items[item.item_id] = item

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
