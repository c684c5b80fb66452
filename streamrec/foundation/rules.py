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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamrec.foundation.schema import Item

DAY_S = 86_400.0


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
