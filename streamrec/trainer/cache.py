"""The trainer's copy of the event log: read from Kafka once, kept on disk.

Each refresh reads only the records after the cached offsets (the trainer's
own consumer group also gets them committed, so operators see its lag) and
appends them as one segment file. A segment carries the offsets it reaches,
and is made visible by an atomic rename: the events and the point to resume
from are written together, so a crash can repeat a refresh but never skip or
double one. When the cache passes `max_events`, the oldest events are dropped
by rewriting it as one base segment (the trainer's data window); so are
events older than `max_age_s`, and every event of a user the control topic
asks to forget. The rewrite is one atomic rename too: a crash leaves either
the old segments or the new one, never a cache that half-forgot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from aiokafka import TopicPartition

from streamrec.foundation.codec import Rejected, decode_records
from streamrec.foundation.kafka import KafkaConnection, partitions_of, read_to_end, reader
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Event, Item, Limits, validate_control, validate_event, validate_item
from streamrec.foundation.store import write_atomically
from streamrec.foundation.topics import Topics

log = logging.getLogger(__name__)

SEGMENTS_BEFORE_COMPACTION = 32


@dataclass
class Refresh:
    """What one read from Kafka added."""

    events: int = 0
    items: int = 0
    skipped: int = 0  # invalid records (the worker dead-letters them)
    forgotten: int = 0  # users whose events were deleted


@dataclass
class InteractionCache:
    directory: Path
    max_events: int
    max_age_s: float = 0.0  # 0: no limit but the window
    events: list[Event] = field(default_factory=list)
    items: dict[str, Item] = field(default_factory=dict)
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> next offset
    _segments: list[Path] = field(default_factory=list)

    @classmethod
    def open(cls, directory: Path, max_events: int, max_age_s: float = 0.0) -> InteractionCache:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink()  # a refresh that crashed before its rename
        cache = cls(directory, max_events, max_age_s)
        for path in sorted(directory.glob("segment-*.msgpack")):
            segment = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
            if segment.get("base"):
                cache.events, cache.items, cache._segments = [], {}, []
            cache._absorb(segment)
            cache._segments.append(path)
        return cache

    def _absorb(self, segment: dict) -> None:
        self.events.extend(Event(**wire) for wire in segment["events"])
        self.items.update((wire["item_id"], Item(**wire)) for wire in segment["items"])
        for topic, partitions in segment["offsets"].items():
            self.offsets.setdefault(topic, {}).update({int(p): o for p, o in partitions.items()})

    def _write(self, events: list[Event], items: list[Item], *, base: bool) -> Path:
        number = int(self._segments[-1].stem.split("-")[1]) + 1 if self._segments else 1
        path = self.directory / f"segment-{number:08d}.msgpack"
        segment = {
            "base": base,
            "events": [e.to_wire() for e in events],
            "items": [i.to_wire() for i in items],
            "offsets": self.offsets,
        }
        write_atomically(path, msgpack.packb(segment, use_bin_type=True))
        self._segments.append(path)
        return path

    def append(
        self,
        events: list[Event],
        items: list[Item],
        offsets: dict[str, dict[int, int]],
        forget: Set[str] = frozenset(),
    ) -> None:
        """Add what a refresh read; `forget`: users whose events must all go."""
        for topic, partitions in offsets.items():
            self.offsets.setdefault(topic, {}).update(partitions)
        self.events.extend(events)
        self.items.update((item.item_id, item) for item in items)
        if forget:
            self.events = [event for event in self.events if event.user_id not in forget]
        oldest = self._oldest_kept()  # once: the wall clock, not per event
        too_old = any(event.ts < oldest for event in self.events) if self.max_age_s > 0 else False
        if forget or too_old or len(self.events) > self.max_events or len(self._segments) >= SEGMENTS_BEFORE_COMPACTION:
            self._compact()
        else:
            self._write(events, items, base=False)

    def _oldest_kept(self) -> float:
        return time.time() - self.max_age_s if self.max_age_s > 0 else float("-inf")

    def _compact(self) -> None:
        """One base segment holding the newest `max_events` events not older
        than `max_age_s`; older files go."""
        oldest = self._oldest_kept()
        self.events = sorted((event for event in self.events if event.ts >= oldest), key=lambda e: e.ts)
        del self.events[: max(0, len(self.events) - self.max_events)]
        old = list(self._segments)
        self._write(self.events, list(self.items.values()), base=True)
        for path in old:
            path.unlink()
        self._segments = self._segments[-1:]

    async def refresh(
        self,
        kafka: KafkaConnection,
        topics: Topics,
        group_id: str,
        limits: Limits,
        pseudonyms: Pseudonyms | None = None,
        on_progress: Callable[[int], None] = lambda n: None,
    ) -> Refresh:
        """Read every event, catalog and control record past the cached offsets.

        Events are kept under their stored user id (`pseudonyms`). A forget
        request deletes every cached event of its user, including any read in
        the same refresh: the trainer errs on the side of forgetting.
        """
        pseudonym = pseudonyms if pseudonyms is not None and pseudonyms.enabled else None
        partitions = await partitions_of(kafka, [*topics.events, topics.catalog, topics.control])
        consumer = reader(kafka, group_id=group_id)
        await consumer.start()
        refresh, events, items, forget = Refresh(), [], [], set()
        try:
            tps = [TopicPartition(topic, p) for topic, numbers in partitions.items() for p in numbers]
            if not tps:
                return refresh
            consumer.assign(tps)
            for tp in tps:
                cached = self.offsets.get(tp.topic, {}).get(tp.partition)
                if cached is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, cached)

            def take(tp: TopicPartition, records: list) -> None:
                validate = {topics.catalog: validate_item, topics.control: validate_control}.get(
                    tp.topic, validate_event
                )
                for record in records:
                    for valid in decode_records(record.value, limits, validate):
                        if type(valid) is Rejected:
                            refresh.skipped += 1
                        elif validate is validate_item:
                            items.append(valid)
                        elif validate is validate_control:
                            forget.add(valid.user_id)
                        else:
                            if pseudonym is not None:
                                valid.user_id = pseudonym(valid.user_id)
                            events.append(valid)
                on_progress(len(events))

            await read_to_end(consumer, tps, take)
            offsets: dict[str, dict[int, int]] = {}
            for tp in tps:
                offsets.setdefault(tp.topic, {})[tp.partition] = await consumer.position(tp)
            refresh.events, refresh.items, refresh.forgotten = len(events), len(items), len(forget)
            if events or items or forget or offsets != self.offsets:
                self.append(events, items, offsets, forget)
            await consumer.commit({tp: offsets[tp.topic][tp.partition] for tp in tps})
        finally:
            await consumer.stop()
        log.info(
            "trainer cache: +%d events, +%d items (%d skipped), %d users forgotten; %d events held",
            refresh.events,
            refresh.items,
            refresh.skipped,
            refresh.forgotten,
            len(self.events),
        )
        return refresh
