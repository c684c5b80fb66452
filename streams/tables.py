"""Partitioned key-value tables backed by compacted changelog topics.

The same idea as a Faust table, built for batches: values are kept encoded,
touched values are decoded once per batch, and a flush writes each changed key
once, as one record batch per partition, awaiting the broker's acks before the
worker commits its input offsets. A worker that restarts or takes over a
partition rebuilds the partition from its changelog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.codec import decode, encode

log = logging.getLogger(__name__)

V = TypeVar("V")


class ChangelogTable(Generic[V]):
    """Values of type V by (partition, key); `from_wire`/`to_wire` map V to msgpack."""

    def __init__(self, name: str, changelog: str, from_wire: Callable[[Any], V], to_wire: Callable[[V], Any]):
        self.name = name
        self.changelog = changelog
        self._from_wire = from_wire
        self._to_wire = to_wire
        self._stored: dict[int, dict[str, bytes]] = {}
        self._dirty: dict[int, dict[str, V]] = {}

    @property
    def partitions(self) -> set[int]:
        return set(self._stored)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._stored.values())

    def get(self, partition: int, key: str) -> V | None:
        """The live value: changed-but-unflushed values included."""
        dirty = self._dirty.get(partition)
        if dirty is not None and key in dirty:
            return dirty[key]
        raw = self._stored.get(partition, {}).get(key)
        return None if raw is None else self._from_wire(decode(raw))

    def get_for_update(self, partition: int, key: str, default: Callable[[], V]) -> V:
        """The value to mutate in place; it is written at the next flush."""
        dirty = self._dirty.setdefault(partition, {})
        value = dirty.get(key)
        if value is None:
            raw = self._stored.get(partition, {}).get(key)
            value = default() if raw is None else self._from_wire(decode(raw))
            dirty[key] = value
        return value

    @property
    def pending(self) -> int:
        return sum(len(rows) for rows in self._dirty.values())

    async def flush(self, producer: AIOKafkaProducer) -> int:
        """Write every changed key to the changelog and wait for the acks."""
        sends = []
        written = 0
        for partition, rows in self._dirty.items():
            stored = self._stored.setdefault(partition, {})
            batch = producer.create_batch()
            for key, value in rows.items():
                raw = encode(self._to_wire(value))
                stored[key] = raw
                key_bytes = key.encode()
                if batch.append(key=key_bytes, value=raw, timestamp=None) is None:
                    sends.append(await producer.send_batch(batch, self.changelog, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key_bytes, value=raw, timestamp=None)
                written += 1
            if batch.record_count():
                sends.append(await producer.send_batch(batch, self.changelog, partition=partition))
        self._dirty.clear()
        if sends:
            await asyncio.gather(*sends)
        return written

    def discard_pending(self) -> None:
        """Forget unflushed changes (their input will be redelivered)."""
        self._dirty.clear()

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._stored.pop(partition, None)
            self._dirty.pop(partition, None)

    async def restore(self, bootstrap: str, partitions: Iterable[int]) -> int:
        """Rebuild the given partitions from the changelog; returns the rows read."""
        partitions = sorted(set(partitions))
        if not partitions:
            return 0
        restored = await read_changelog(bootstrap, self.changelog, partitions)
        for partition in partitions:
            self._stored[partition] = restored.get(partition, {})
            self._dirty.pop(partition, None)
        rows = sum(len(restored.get(p, {})) for p in partitions)
        log.info("table %s: restored %d rows of partitions %s", self.name, rows, partitions)
        return rows

    def items(self) -> Iterable[tuple[int, str, V]]:
        for partition, rows in self._stored.items():
            for key in rows:
                value = self.get(partition, key)
                if value is not None:
                    yield partition, key, value


async def read_changelog(
    bootstrap: str, topic: str, partitions: Iterable[int] | None = None
) -> dict[int, dict[str, bytes]]:
    """The latest value of every key of a compacted topic, up to its current end.

    A null value (tombstone) deletes its key, as compaction would.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        if partitions is None:
            partitions = sorted(consumer.partitions_for_topic(topic) or await _partitions_of(consumer, topic))
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        rows: dict[int, dict[str, bytes]] = {tp.partition: {} for tp in tps}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=100_000)
            for tp, records in batches.items():
                table = rows[tp.partition]
                for record in records:
                    key = record.key.decode() if record.key is not None else None
                    if key is None:
                        continue
                    if record.value is None:
                        table.pop(key, None)
                    else:
                        table[key] = record.value
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return rows
    finally:
        await consumer.stop()


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh in aiokafka
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(f"topic {topic!r} does not exist")
    return partitions
