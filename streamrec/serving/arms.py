"""Which arm answers a request, and what each arm has made and earned.

An answer's `Plan` is its placement's configuration for the asking user: the
placement's own rule outside an experiment, a variant's rule and diversity in
one. Answers are counted per arm where they are made (`AnswerCounts`); the
clicks and purchases sent back with their recommendation ids are counted by
the workers and read here from their changelog (`ArmCountsReplica`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from streamrec.foundation.attribution import MAX_ARMS_PER_PARTITION, Arm, ArmCounts
from streamrec.foundation.codec import decode
from streamrec.foundation.kafka import PartitionRows
from streamrec.foundation.rules import Rule

log = logging.getLogger(__name__)

MAX_ARMS_COUNTED = MAX_ARMS_PER_PARTITION  # arms whose answers a process counts; further ones are not


@dataclass(frozen=True)
class Plan:
    """How to answer one request: under which arm, rule and diversity (None: the request's)."""

    arm: Arm
    rule: Rule | None
    diversity: float | None = None


class AnswerCounts:
    """The answers this process made, per arm key."""

    def __init__(self) -> None:
        self.by_arm: Counter[str] = Counter()

    def resume(self, counted: Mapping[str, int]) -> None:
        """Count on from what this server counted before a restart (its last heartbeat)."""
        for key, answers in counted.items():
            self._add(key, answers)

    def new_id(self, arm: Arm) -> str:
        """A recommendation id for one more answer of `arm`, counted."""
        self._add(arm.key, 1)
        return arm.new_id()

    def _add(self, key: str, answers: int) -> None:
        if key in self.by_arm or len(self.by_arm) < MAX_ARMS_COUNTED:
            self.by_arm[key] += answers


class ArmCountsReplica(PartitionRows[ArmCounts]):
    """The workers' attributed counts, from their changelog: every partition's, summed per arm."""

    def __init__(self, topic: str):
        super().__init__(topic, "arm-counts", lambda value: ArmCounts.from_wire(decode(value)))

    def accepts(self, key: str) -> bool:
        return key.count("~") == 2  # an arm key, placement~experiment~variant: the only kind a worker writes

    def totals(self) -> dict[str, ArmCounts]:
        """Every arm's counts over every partition, by arm key."""
        summed: dict[str, ArmCounts] = {}
        for (_, key), counts in self.rows.items():
            summed.setdefault(key, ArmCounts()).add(counts)
        return summed
