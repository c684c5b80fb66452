"""A merchandiser's rules per placement ("scenario"): which items a placement
may show, which it lifts, and which it promotes into a slot.

Rules live on the compacted `recs.rules` topic, keyed by placement, so every
server and answering process holds the same rules and a change reaches them
all within a poll. A record is JSON `{"rule": {...}, "signature": "..."}`;
where admin keys are set, only a rule signed with one is applied (anyone who
can write the topic is not thereby a merchandiser). The same model validates
the API's requests and the topic's records: every list and string is bounded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamrec.foundation.attribution import PLACEMENT
from streamrec.foundation.kafka import FollowedTopic
from streamrec.foundation.schema import Item, show

log = logging.getLogger(__name__)

DEFAULT_PLACEMENT = "default"  # the rule of answers that name no placement, and of the published ones
PLACEMENT_PATTERN = rf"^{PLACEMENT}$"
DAY_S = 86_400.0
MAX_RULES = 1000  # placements held; a record beyond them is refused


class Boost(BaseModel):
    """Items matching every condition given move up by `weight` times the
    spread of the candidates' scores: 1 lifts a match above every candidate
    that does not match, a negative weight buries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str | None = Field(None, min_length=1, max_length=256)
    attribute: str | None = Field(None, min_length=1, max_length=64, description="An item attribute, e.g. brand.")
    value: str | None = Field(None, max_length=64, description="The attribute's value to match.")
    new_within_days: float | None = Field(None, gt=0, le=3650, description="Items added to the catalog this recently.")
    weight: float = Field(ge=-1, le=1)

    @model_validator(mode="after")
    def _complete(self) -> Boost:
        if (self.attribute is None) != (self.value is None):
            raise ValueError("a boost names an attribute and its value together")
        if self.category is None and self.attribute is None and self.new_within_days is None:
            raise ValueError("a boost needs a condition: category, attribute and value, or new_within_days")
        return self

    def matches(self, item: Item | None, now: float) -> bool:
        if item is None:
            return False
        return (
            (self.category is None or item.category == self.category)
            and (self.attribute is None or item.attributes.get(self.attribute) == self.value)
            and (self.new_within_days is None or _age_s(item, now) <= self.new_within_days * DAY_S)
        )


class Rule(BaseModel):
    """What one placement may show (filters), lifts (boosts) and promotes.
    Empty lists and absent bounds filter nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    include_categories: tuple[str, ...] = Field((), max_length=100, description="Only these categories (empty: all).")
    exclude_categories: tuple[str, ...] = Field((), max_length=100)
    exclude_items: tuple[str, ...] = Field((), max_length=1000)
    min_price: float | None = Field(None, ge=0, description="Items without a price fail a price bound.")
    max_price: float | None = Field(None, ge=0)
    max_age_days: float | None = Field(
        None, gt=0, le=36500, description="Only items whose catalog record is this recent (items without ts fail)."
    )
    boosts: tuple[Boost, ...] = Field((), max_length=20)
    promoted: tuple[str, ...] = Field((), max_length=10, description="Items shown from `promoted_slot` on.")
    promoted_slot: int = Field(0, ge=0, le=100, description="0: the first place.")

    @model_validator(mode="after")
    def _bounded(self) -> Rule:
        for name in ("include_categories", "exclude_categories", "exclude_items", "promoted"):
            if any(not 1 <= len(value) <= 256 for value in getattr(self, name)):
                raise ValueError(f"each of {name} is 1 to 256 characters")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")
        return self

    @property
    def filters(self) -> bool:
        """Whether the rule keeps some catalog items out."""
        return bool(
            self.include_categories
            or self.exclude_categories
            or self.exclude_items
            or self.min_price is not None
            or self.max_price is not None
            or self.max_age_days is not None
        )

    def allows(self, item: Item, now: float) -> bool:
        """Whether the filters let `item` through at `now` (wall-clock Unix seconds)."""
        if self.include_categories and item.category not in self.include_categories:
            return False
        if item.category in self.exclude_categories or item.item_id in self.exclude_items:
            return False
        if self.min_price is not None and (item.price is None or item.price < self.min_price):
            return False
        if self.max_price is not None and (item.price is None or item.price > self.max_price):
            return False
        return self.max_age_days is None or _age_s(item, now) <= self.max_age_days * DAY_S

    def boost(self, item: Item | None, now: float) -> float:
        """The summed weight of the boosts `item` matches."""
        return sum(b.weight for b in self.boosts if b.matches(item, now))


def _age_s(item: Item, now: float) -> float:
    return float("inf") if item.ts is None else now - item.ts


def is_placement(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(PLACEMENT_PATTERN, name) is not None


def signed_bytes(placement: str, rule: Rule) -> bytes:
    """What a rule's signature covers: the placement and the rule's JSON with
    sorted keys (a rule signed for one placement does not pass for another)."""
    return placement.encode() + b"\n" + json.dumps(rule.model_dump(mode="json"), sort_keys=True).encode()


def rule_record(rule: Rule, signature: str) -> bytes:
    return json.dumps({"rule": rule.model_dump(mode="json", exclude_defaults=True), "signature": signature}).encode()


Verify = Callable[[bytes, str], bool]  # (signed bytes, signature) -> whether an admin key signed them


class RuleBook(FollowedTopic):
    """Every placement's current rule, from the rules topic. A record that does
    not parse, validate or verify is logged and skipped: the rule before it stays."""

    def __init__(self, topic: str, verify: Verify):
        super().__init__(topic)
        self.verify = verify
        self.rules: dict[str, Rule] = {}

    def get(self, placement: str) -> Rule | None:
        return self.rules.get(placement)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        placement = key.decode(errors="replace") if key is not None else None
        if not is_placement(placement):
            log.warning("ignoring a rule for a malformed placement %s", show(placement))
            return
        assert placement is not None
        if value is None:
            self.rules.pop(placement, None)
            return
        try:
            record = json.loads(value)
            rule = Rule.model_validate(record["rule"])
            signature = record.get("signature", "")
        except (ValueError, TypeError, KeyError, ValidationError) as exc:
            log.warning("ignoring an invalid rule for %s: %s", placement, str(exc)[:300])
            return
        if not isinstance(signature, str) or not self.verify(signed_bytes(placement, rule), signature):
            log.warning("ignoring a rule for %s that no admin key signed", placement)
            return
        if placement not in self.rules and len(self.rules) >= MAX_RULES:
            log.warning("ignoring a rule for %s: %d placements already have rules", placement, MAX_RULES)
            return
        self.rules[placement] = rule
