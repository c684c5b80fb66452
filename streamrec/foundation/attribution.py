"""Recommendation ids and the clicks and purchases attributed to them.

Every answer carries a recommendation id naming where it was shown and, in an
experiment, which variant made it: `placement~experiment~variant~nonce`
(experiment and variant empty outside one). A shop sends the id back on the
click or purchase that followed the answer; the workers count those events
per arm (the id without its nonce) in a changelog-backed table, per event
partition, as item statistics are counted (exact through a killed worker with
exactly_once processing), and a reader sums the partitions.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

PLACEMENT = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # where an answer is shown: its rule's key
NAME = r"[A-Za-z0-9_-]{1,32}"  # an experiment's or a variant's name
RECOMMENDATION_ID = re.compile(rf"({PLACEMENT})~({NAME}|)~({NAME}|)~[0-9a-f]{{16}}")
MAX_RECOMMENDATION_ID_CHARS = 64 + 1 + 32 + 1 + 32 + 1 + 16
MAX_ARMS_PER_PARTITION = 4096  # distinct arms a partition counts; ids of further arms are not counted


@dataclass(frozen=True, slots=True)
class Arm:
    """Where an answer was shown and which variant made it ('' outside an experiment)."""

    placement: str
    experiment: str = ""
    variant: str = ""

    @property
    def key(self) -> str:
        return f"{self.placement}~{self.experiment}~{self.variant}"

    def new_id(self) -> str:
        """A fresh recommendation id for one answer of this arm."""
        return f"{self.key}~{secrets.token_hex(8)}"


def arm_of(recommendation_id: str) -> Arm | None:
    """The arm a recommendation id names, or None for a malformed id."""
    match = RECOMMENDATION_ID.fullmatch(recommendation_id)
    if match is None or (match[2] == "") != (match[3] == ""):
        return None
    return Arm(match[1], match[2], match[3])


def arm_key(recommendation_id: str) -> str:
    """The key of the arm a validated recommendation id names: the id without its nonce."""
    return recommendation_id.rpartition("~")[0]


@dataclass(slots=True)
class ArmCounts:
    """The events attributed to one arm in one partition: clicks, purchases
    and their revenue (price times quantity, where the purchase gives a price)."""

    clicks: int = 0
    purchases: int = 0
    revenue: float = 0.0

    def add(self, other: ArmCounts) -> None:
        self.clicks += other.clicks
        self.purchases += other.purchases
        self.revenue += other.revenue

    def to_wire(self) -> dict[str, Any]:
        return {"c": self.clicks, "p": self.purchases, "r": self.revenue}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ArmCounts:
        return cls(int(wire["c"]), int(wire["p"]), float(wire["r"]))
