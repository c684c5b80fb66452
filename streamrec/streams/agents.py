"""The agents: what happens to each record of each input topic.

Decode, validate, fold into the tables, and hand back what must be written
elsewhere (dead letters, events to re-route). Kafka I/O stays in the worker;
these functions only touch the in-memory tables, so a batch of records costs
no more than the Python to fold them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from streamrec.foundation.attribution import MAX_ARMS_PER_PARTITION, ArmCounts, arm_key
from streamrec.foundation.catalog import CatalogView
from streamrec.foundation.codec import Rejected, decode_records, encode
from streamrec.foundation.features import (
    PURCHASE,
    FeatureConfig,
    ItemStats,
    UserFeatures,
    apply_event,
    apply_item_counts,
)
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Event, Limits, validate_control, validate_event, validate_item
from streamrec.streams.tables import ChangelogTable

log = logging.getLogger(__name__)

DEAD_LETTER_MAX_BYTES = 64 * 1024  # an oversized value is kept in part: enough to see what it was


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A value that broke the contract, with where it came from and why."""

    key: bytes | None
    value: bytes | None
    reason: str
    topic: str
    partition: int
    offset: int
    element: int | None = None

    def payload(self) -> bytes | None:
        """The original value, cut to DEAD_LETTER_MAX_BYTES (a header says when)."""
        return None if self.value is None else self.value[:DEAD_LETTER_MAX_BYTES]

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("reason", self.reason.encode()),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
        ]
        if self.element is not None:
            headers.append(("element", str(self.element).encode()))
        if self.value is not None and len(self.value) > DEAD_LETTER_MAX_BYTES:
            headers.append(("truncated_from", str(len(self.value)).encode()))
        return headers


@dataclass(frozen=True, slots=True)
class Reroute:
    """An event keyed otherwise than by its user_id, or in another partition than
    the user's (a producer with another partitioner: librdkafka's default is
    CRC32, not Kafka's murmur2): it is sent again, keyed by user and partitioned
    by murmur2, so that all of a user's events meet the user's state."""

    topic: str
    key: bytes
    value: bytes


@dataclass(slots=True)
class Outcome:
    """What one batch of records produced besides table changes."""

    events: int = 0  # events folded into the tables
    items: int = 0  # valid catalog items
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reroutes: list[Reroute] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)  # users whose published answers get a tombstone

    def absorb(self, later: Outcome) -> Outcome:
        """This outcome followed by a later one (a failed commit's outcome is
        put back before what came since)."""
        self.events += later.events
        self.items += later.items
        self.duplicates += later.duplicates
        self.dead_letters += later.dead_letters
        self.reroutes += later.reroutes
        self.forgotten += later.forgotten
        return self


@dataclass(frozen=True)
class Tables:
    """A worker's tables: user features, item statistics and attributed counts."""

    users: ChangelogTable[UserFeatures]
    items: ChangelogTable[ItemStats]
    arms: ChangelogTable[ArmCounts]


class Agents:
    """The per-topic logic, over the worker's tables and catalog view."""

    def __init__(
        self,
        tables: Tables,
        catalog: CatalogView,
        config: FeatureConfig,
        limits: Limits,
        pseudonyms: Pseudonyms | None = None,
    ):
        self.users, self.items, self.arms = tables.users, tables.items, tables.arms
        self.catalog = catalog
        self.config = config
        self.limits = limits
        self.pseudonyms = pseudonyms or Pseudonyms.disabled()
        # Partitions of the event topics (set on assignment; 0: not known yet, not checked).
        self.partitions = 0
        # user id -> (partition, event id, event ts) of the user's latest event,
        # for the real-time publisher to drain; None when nothing publishes.
        self.touched: dict[str, tuple[int, str, float]] | None = None
        self.forgotten: list[str] = []  # users forgotten since the last hand-over, while `touched` is kept

    def on_events(self, topic: str, partition: int, records: list, outcome: Outcome) -> None:
        """Clicks and purchases: user features and item statistics.

        The hot path of the product: table rows are reached directly and item
        counts are tallied per (item, bucket) and applied once per batch.
        """
        config, limits, partitions = self.config, self.limits, self.partitions
        users, dirty_users = self.users.for_update(partition)
        touched = self.touched
        category_of = self.catalog.category_of
        pseudonym = self.pseudonyms if self.pseudonyms.enabled else None
        bucket_s = config.popularity_bucket_s
        tally: dict[tuple[str, int], list] = {}
        attributed: list[Event] = []
        accepted = duplicates = 0
        for record in records:
            key = record.key
            try:
                for event in decode_records(record.value, limits, validate_event):
                    if type(event) is Rejected:
                        outcome.dead_letters.append(_dead(record, topic, partition, event))
                        continue
                    user_id = event.user_id
                    if (
                        key is None
                        or key.decode(errors="replace") != user_id
                        or (partitions and partition_for(user_id, partitions) != partition)
                    ):
                        outcome.reroutes.append(Reroute(topic, user_id.encode(), encode(event.to_wire())))
                        continue
                    if pseudonym is not None:  # the raw id chose the partition; only the pseudonym is kept
                        user_id = event.user_id = pseudonym(user_id)
                    user = users.get(user_id)
                    if user is None:
                        user = users[user_id] = UserFeatures(user_id)
                    if not apply_event(user, event, category_of(event.item_id), config):
                        duplicates += 1
                        continue
                    dirty_users.add(user_id)
                    if touched is not None:
                        touched[user_id] = (partition, event.event_id, event.ts)
                    accepted += 1
                    slot = (event.item_id, int(event.ts // bucket_s) * bucket_s)
                    counts = tally.get(slot)
                    if counts is None:
                        counts = tally[slot] = [0, 0, 0.0]
                    counts[event.type == PURCHASE] += 1
                    if event.ts > counts[2]:
                        counts[2] = event.ts
                    if event.recommendation_id is not None:
                        attributed.append(event)
            except Exception as exc:  # noqa: BLE001 - one record must never stop its partition
                log.exception("%s[%d]@%d could not be processed; dead-lettered", topic, partition, record.offset)
                reason = f"could not be processed: {type(exc).__name__}: {str(exc)[:200]}"
                outcome.dead_letters.append(_dead(record, topic, partition, Rejected(reason)))
        outcome.events += accepted
        outcome.duplicates += duplicates
        items, dirty_items = self.items.for_update(partition)
        for (item_id, start), (clicks, purchases, last_ts) in tally.items():
            stats = items.get(item_id)
            if stats is None:
                stats = items[item_id] = ItemStats(item_id)
            apply_item_counts(stats, start, clicks, purchases, last_ts, config)
            dirty_items.add(item_id)
        if attributed:
            self._attribute(partition, attributed)

    def _attribute(self, partition: int, events: list[Event]) -> None:
        """Count each event under the arm its recommendation id names (ids
        were checked on validation; arms beyond the bound are not counted)."""
        arms, dirty = self.arms.for_update(partition)
        for event in events:
            key = arm_key(event.recommendation_id or "")
            counts = arms.get(key)
            if counts is None:
                if len(arms) >= MAX_ARMS_PER_PARTITION:
                    log.warning("not attributing %s: partition %d counts %d arms", key, partition, len(arms))
                    continue
                counts = arms[key] = ArmCounts()
            if event.type == PURCHASE:
                counts.purchases += 1
                counts.revenue += (event.price or 0.0) * (event.quantity or 1)
            else:
                counts.clicks += 1
            dirty.add(key)

    def on_catalog(self, topic: str, partition: int, records: list, outcome: Outcome) -> None:
        """Catalog items: validated here (bad ones dead-lettered); every worker's
        CatalogView reads the topic itself as the catalog table."""
        for record in records:
            if record.value is None:  # a tombstone deletes an item
                continue
            for item in decode_records(record.value, self.limits, validate_item):
                if type(item) is Rejected:
                    outcome.dead_letters.append(_dead(record, topic, partition, item))
                else:
                    outcome.items += 1

    def on_control(self, topic: str, partition: int, records: list, outcome: Outcome) -> None:
        """Forget requests: the user's row goes (its changelog gets a
        tombstone at the next flush) and so do their published answers.
        Idempotent: forgetting an unknown user changes nothing but is still
        answered with a tombstone."""
        check_partition = self.partitions and not self.pseudonyms.enabled
        for record in records:
            for forget in decode_records(record.value, self.limits, validate_control):
                if type(forget) is Rejected:
                    outcome.dead_letters.append(_dead(record, topic, partition, forget))
                    continue
                user_id = forget.user_id
                # A pseudonym's partition came from the raw id, which only the sender knew.
                if check_partition and partition_for(user_id, self.partitions) != partition:
                    outcome.reroutes.append(Reroute(topic, user_id.encode(), encode(forget.to_wire())))
                    continue
                self.users.delete(partition, user_id)
                if self.touched is not None:
                    self.touched.pop(user_id, None)
                    self.forgotten.append(user_id)
                outcome.forgotten.append(user_id)


def _dead(record, topic: str, partition: int, rejected: Rejected) -> DeadLetter:
    return DeadLetter(record.key, record.value, rejected.reason, topic, partition, record.offset, rejected.element)
