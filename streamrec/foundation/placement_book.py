"""What a merchandiser sets per placement (a rule, an experiment), as every
server and answering process holds it.

Each kind lives on a compacted topic keyed by placement, so a change reaches
every process within a poll. A record is JSON `{"<kind>": {...}, "signature":
"..."}`; where admin keys are set, only a record signed with one is applied
(anyone who can write the topic is not thereby a merchandiser). The same
pydantic model validates the API's requests and the topic's records.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from streamrec.foundation.attribution import PLACEMENT
from streamrec.foundation.kafka import FollowedTopic
from streamrec.foundation.schema import show

log = logging.getLogger(__name__)

DEFAULT_PLACEMENT = "default"  # of answers that name no placement, and of the published ones
PLACEMENT_PATTERN = rf"^{PLACEMENT}$"
MAX_PLACEMENTS = 1000  # placements a book holds; a record for one more is refused

M = TypeVar("M", bound=BaseModel)
Verify = Callable[[bytes, str], bool]  # (signed bytes, signature) -> whether an admin key signed them


def is_placement(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(PLACEMENT_PATTERN, name) is not None


def signed_bytes(placement: str, value: BaseModel) -> bytes:
    """What a signature covers: the placement and the value's JSON with sorted
    keys (a value signed for one placement does not pass for another)."""
    return placement.encode() + b"\n" + json.dumps(value.model_dump(mode="json"), sort_keys=True).encode()


def placement_record(kind: str, value: BaseModel, signature: str) -> bytes:
    return json.dumps({kind: value.model_dump(mode="json", exclude_defaults=True), "signature": signature}).encode()


class PlacementBook(FollowedTopic, Generic[M]):
    """Every placement's current value of one kind, from its topic. A record
    that does not parse, validate or verify is logged and skipped: the value
    before it stays."""

    def __init__(self, topic: str, kind: str, model: type[M], verify: Verify):
        super().__init__(topic)
        self.kind, self.model, self.verify = kind, model, verify
        self.entries: dict[str, M] = {}

    def get(self, placement: str) -> M | None:
        return self.entries.get(placement)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        placement = key.decode(errors="replace") if key is not None else None
        kind = self.kind
        if placement is None or not is_placement(placement):
            log.warning("ignoring a %s for a malformed placement %s", kind, show(placement))
            return
        if value is None:
            self.entries.pop(placement, None)
            return
        try:
            record = json.loads(value)
            entry = self.model.model_validate(record[kind])
            signature = record.get("signature", "")
        except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:
            log.warning("ignoring an invalid %s for %s: %s", kind, placement, str(exc)[:300])
            return
        if not isinstance(signature, str) or not self.verify(signed_bytes(placement, entry), signature):
            log.warning("ignoring a %s for %s that no admin key signed", kind, placement)
            return
        if placement not in self.entries and len(self.entries) >= MAX_PLACEMENTS:
            log.warning("ignoring a %s for %s: %d placements already have one", kind, placement, MAX_PLACEMENTS)
            return
        self.entries[placement] = entry
