"""A placement's experiment: its users split by a stable hash between variants,
each answering under its own configuration.

A variant may answer under another placement's rule (a rule tried out before
it replaces the placement's own) and with its own diversity. A user's variant
depends only on the experiment's name and the user's id: every server and
answering process puts a user in the same variant, and a new experiment (a new
name) draws the split again. Answers carry the arm in their recommendation id
(`foundation.attribution`), and the clicks and purchases sent back with it are
counted per variant by the workers.
"""

from __future__ import annotations

import hashlib
import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamrec.foundation.attribution import NAME, PLACEMENT, Arm

MAX_VARIANTS = 4
SHARE_TOLERANCE = 1e-6


class Variant(BaseModel):
    """One configuration of an experiment and the share of users it answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=rf"^{NAME}$", description="Letters, digits, _ and -; up to 32.")
    share: float = Field(gt=0, le=1, description="The fraction of users; the variants' shares sum to 1.")
    rule_placement: str | None = Field(
        None,
        pattern=rf"^{PLACEMENT}$",
        description="Answer under this placement's rule instead of the experiment's own placement's.",
    )
    diversity: float | None = Field(None, ge=0, le=1, description="Overrides the request's diversity.")


class Experiment(BaseModel):
    """Two to four variants splitting a placement's users."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=rf"^{NAME}$", description="A new name starts new counts and a new split.")
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=MAX_VARIANTS)

    @model_validator(mode="after")
    def _a_partition_of_the_users(self) -> Experiment:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must differ, got {names}")
        total = sum(variant.share for variant in self.variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"the variants' shares must sum to 1, they sum to {total:g}")
        return self

    def variant_for(self, user_id: str) -> Variant:
        """The user's variant: the first whose cumulative share passes the
        user's point in [0, 1), from SHA-256 of the experiment's name and the id."""
        digest = hashlib.sha256(f"{self.name}\n{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        reached = 0.0
        for variant in self.variants:
            reached += variant.share
            if point < reached:
                return variant
        return self.variants[-1]  # shares summing to 1 within the tolerance

    def arm(self, placement: str, variant: Variant) -> Arm:
        return Arm(placement, self.name, variant.name)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a rate (95% by default); None without
    trials. Successes beyond the trials (a user clicking twice on one answer)
    count as one per trial."""
    if trials <= 0:
        return None
    p = min(successes, trials) / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
