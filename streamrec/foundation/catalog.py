"""The whole catalog in every worker: a global table over the compacted catalog topic.

Events are partitioned by user, yet folding a click into the user's category
affinity needs the item's category, whichever partition the item lives in. So
each worker reads every partition of `shop.catalog` (no consumer group), the
way a Faust GlobalTable does; the topic itself is the changelog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamrec.foundation.codec import Rejected, decode_records
from streamrec.foundation.kafka import FollowedTopic, KafkaConnection
from streamrec.foundation.schema import Item, Limits, validate_item

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Removed:
    """A catalog tombstone: the item is gone from the shop."""

    item_id: str


CatalogChange = Item | Removed


class CatalogView(FollowedTopic):
    """Latest valid version of every catalog item, kept current by polling.

    `changed` collects the items applied and removed since the caller last
    drained it, in order (serving re-embeds new items, flips stock flags and
    switches removed items off from it)."""

    def __init__(self, topic: str, limits: Limits, *, track_changes: bool = False):
        super().__init__(topic)
        self.limits = limits
        self.items: dict[str, Item] = {}
        self.changed: list[CatalogChange] | None = [] if track_changes else None

    def category_of(self, item_id: str) -> str | None:
        item = self.items.get(item_id)
        return None if item is None else item.category

    async def start(self, kafka: KafkaConnection) -> None:
        """Read the catalog up to its current end before any event is processed,
        so that a replay's catalog (sent first) is known to the first click."""
        await super().start(kafka)
        log.info("catalog: %d items loaded", len(self.items))

    def drain_changes(self) -> list[CatalogChange]:
        if self.changed is None:
            return []
        changed, self.changed = self.changed, []
        return changed

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                item_id = key.decode(errors="replace")
                self.items.pop(item_id, None)
                if self.changed is not None:
                    self.changed.append(Removed(item_id))
            return
        # Invalid records are skipped here: the worker owning the partition
        # dead-letters them (the same decoding and bounds decide both).
        for item in decode_records(value, self.limits, validate_item):
            if isinstance(item, Rejected):
                log.debug("catalog: skipping an invalid record: %s", item.reason)
                continue
            self.items[item.item_id] = item
            if self.changed is not None:
                self.changed.append(item)
