"""Partitioned key-value tables backed by compacted changelog topics.

The same idea as a Faust table, built for batches: values live in memory as
Python objects (as in Faust's default memory store), a key changed many times
in a batch is written once, and a flush sends one record batch per partition
and awaits the broker's acks before the worker commits its input offsets. A
worker that restarts or takes over a partition rebuilds it from the changelog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition

from streamrec.foundation.codec import decode, encode
from streamrec.foundation.kafka import KafkaConnection, read_to_end, reader

log = logging.getLogger(__name__)

V = TypeVar("V")
Taken = dict[int, list[tuple[str, bytes | None]]]  # a table's changed rows by partition, encoded (None: tombstone)


class ChangelogTable(Generic[V]):
    """Values of type V by (partition, key); `from_wire`/`to_wire` map V to msgpack."""

    def __init__(self, name: str, changelog: str, from_wire: Callable[[Any], V], to_wire: Callable[[V], Any]):
        self.name = name
        self.changelog = changelog
        self._from_wire = from_wire
        self._to_wire = to_wire
        self._rows: dict[int, dict[str, V]] = {}
        self._dirty: dict[int, set[str]] = {}
        self.writes = 0  # changelog records written, for the benchmark and metrics

    @property
    def partitions(self) -> set[int]:
        return set(self._rows)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def get(self, partition: int, key: str) -> V | None:
        return self._rows.get(partition, {}).get(key)

    def for_update(self, partition: int) -> tuple[dict[str, V], set[str]]:
        """A partition's rows and its set of changed keys, for a batch loop to
        mutate directly: a key added to the set is written at the next flush."""
        rows = self._rows.get(partition)
        if rows is None:
            rows = self._rows[partition] = {}
        dirty = self._dirty.get(partition)
        if dirty is None:
            dirty = self._dirty[partition] = set()
        return rows, dirty

    def delete(self, partition: int, key: str) -> bool:
        """Remove a key; the next flush writes its tombstone (so restores and
        replicas drop it too). False when the partition did not hold it."""
        rows, dirty = self.for_update(partition)
        if rows.pop(key, None) is None:
            return False
        dirty.add(key)
        return True

    def take(self) -> Taken:
        """Every changed key's row, encoded now (None: a deleted key's tombstone),
        taken without yielding (`Snapshot` takes several tables so, at one instant)."""
        dirty, self._dirty = self._dirty, {}
        to_wire, taken = self._to_wire, {}
        for partition, keys in dirty.items():
            rows = self._rows.get(partition)
            if rows is None:  # dropped in a rebalance meanwhile
                continue
            taken[partition] = [(key, None if (row := rows.get(key)) is None else encode(to_wire(row))) for key in keys]
        return taken

    def mark_again(self, taken: Taken) -> None:
        """A snapshot that was not written: its keys go in the next one."""
        for partition, rows in taken.items():
            if partition in self._rows:
                self._dirty.setdefault(partition, set()).update(key for key, _ in rows)

    async def write(self, producer: AIOKafkaProducer, taken: Taken) -> int:
        """Send a snapshot (`take`) to the changelog and wait for the acks."""
        sends = []
        for partition, rows in taken.items():
            batch = producer.create_batch()
            for key, raw in rows:
                if batch.append(key=key.encode(), value=raw, timestamp=None) is None:
                    sends.append(await producer.send_batch(batch, self.changelog, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key.encode(), value=raw, timestamp=None)
            if batch.record_count():
                sends.append(await producer.send_batch(batch, self.changelog, partition=partition))
        written = sum(len(rows) for rows in taken.values())
        self.writes += written
        if sends:
            await asyncio.gather(*sends)
        return written

    def hold(self, partitions: set[int]) -> None:
        """Hold exactly these partitions (after Faust's restore): others are
        dropped, a new one with nothing restored starts empty."""
        self.drop(self.partitions - partitions)
        for partition in partitions:
            self._rows.setdefault(partition, {})

    def load(self, partition: int, key: bytes, raw: bytes | None) -> None:
        """Apply one changelog record (Faust's restore hands them one by one)."""
        rows = self._rows.setdefault(partition, {})
        if raw is None:
            rows.pop(key.decode(), None)
        else:
            rows[key.decode()] = self._from_wire(decode(raw))

    def discard_pending(self) -> None:
        """Forget the partitions holding unflushed changes: their input will be
        redelivered, so they must be restored from the changelog, not kept half-done."""
        self.drop(list(self._dirty))

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._rows.pop(partition, None)
            self._dirty.pop(partition, None)

    async def restore(self, kafka: KafkaConnection, partitions: Iterable[int]) -> int:
        """Rebuild the given partitions from the changelog; returns the rows read."""
        partitions = sorted(set(partitions))
        if not partitions:
            return 0
        restored = await read_changelog(kafka, self.changelog, partitions)
        from_wire = self._from_wire
        for partition in partitions:
            self._rows[partition] = {key: from_wire(decode(raw)) for key, raw in restored.get(partition, {}).items()}
            self._dirty.pop(partition, None)
        rows = sum(len(restored.get(p, {})) for p in partitions)
        log.info("table %s: restored %d rows of partitions %s", self.name, rows, partitions)
        return rows

    def items(self) -> Iterable[tuple[int, str, V]]:
        for partition, rows in self._rows.items():
            for key, value in rows.items():
                yield partition, key, value


class Snapshot:
    """Several tables' changed rows, taken at one instant of the fold: an event
    is in all of them or in none (item rows taken after the user rows' awaited
    writes once held events the user rows did not). Rows changed while a
    snapshot is written go in the next one; a snapshot not written is marked
    again, so the next one writes its keys before any offset passes them."""

    def __init__(self, *tables: ChangelogTable):
        self._taken = [(table, table.take()) for table in tables]

    async def write(self, producer: AIOKafkaProducer) -> int:
        """Send every table's rows and wait for the acks; the records written."""
        return sum([await table.write(producer, taken) for table, taken in self._taken])

    def mark_again(self) -> None:
        for table, taken in self._taken:
            table.mark_again(taken)


async def flush(producer: AIOKafkaProducer, *tables: ChangelogTable) -> int:
    """Write every row the tables changed, together, and wait for the acks;
    on failure their keys stay marked for the next flush."""
    snapshot = Snapshot(*tables)
    try:
        return await snapshot.write(producer)
    except BaseException:
        snapshot.mark_again()
        raise


async def read_changelog(kafka: KafkaConnection, topic: str, partitions: Iterable[int]) -> dict[int, dict[str, bytes]]:
    """The latest value of every key of a compacted topic, up to its current end.

    A null value (tombstone) deletes its key, as compaction would.
    """
    consumer = reader(kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        rows: dict[int, dict[str, bytes]] = {tp.partition: {} for tp in tps}

        def fold(tp: TopicPartition, records: list) -> None:
            table = rows[tp.partition]
            for record in records:
                if record.key is None:
                    continue
                key = record.key.decode()
                if record.value is None:
                    table.pop(key, None)
                else:
                    table[key] = record.value

        await read_to_end(consumer, tps, fold)
        return rows
    finally:
        await consumer.stop()
