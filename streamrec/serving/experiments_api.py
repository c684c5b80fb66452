"""The placements' experiments over HTTP, with each variant's results.

Anyone with a read key sees an experiment and its results, an admin key
starts, changes or ends one. A variant's results are the answers it made
(counted by the servers: `answers`) and the clicks, purchases and revenue the
shop sent back with those answers' recommendation ids (counted exactly by the
workers, read from their changelog); its click-through and conversion rates
are per answer, with 95% Wilson intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from streamrec.foundation.attribution import ArmCounts
from streamrec.foundation.experiments import Experiment, wilson_interval
from streamrec.foundation.http import Access
from streamrec.serving.live import LiveModel
from streamrec.serving.placement_api import PlacementWriter, placement_path, write_and_apply

Answers = Callable[[], Mapping[str, int]]  # arm key -> answers made, by every server heard


class Rate(BaseModel):
    value: float
    low: float = Field(description="The 95% Wilson interval's lower end.")
    high: float


class VariantResults(BaseModel):
    variant: str
    share: float
    answers: int = Field(description="Answers the servers made under the variant.")
    clicks: int = Field(description="Clicks sent back with a recommendation id of the variant.")
    purchases: int
    revenue: float = Field(description="The attributed purchases' price times quantity, where they give a price.")
    ctr: Rate | None = Field(description="Clicks per answer; None before the first answer.")
    conversion: Rate | None = Field(description="Purchases per answer.")


class PlacementExperiment(BaseModel):
    placement: str
    experiment: Experiment | None
    results: list[VariantResults] = []


def experiments_router(live: LiveModel, writer: PlacementWriter | None, access: Access, answers: Answers) -> APIRouter:
    router = APIRouter()
    book = live.experiments

    def with_results(placement: str, experiment: Experiment) -> PlacementExperiment:
        made, attributed = answers(), live.arm_counts.totals()
        results = []
        for variant in experiment.variants:
            arm = experiment.arm(placement, variant)
            counts, shown = attributed.get(arm.key) or ArmCounts(), made.get(arm.key, 0)
            results.append(
                VariantResults(
                    variant=variant.name,
                    share=variant.share,
                    answers=shown,
                    clicks=counts.clicks,
                    purchases=counts.purchases,
                    revenue=round(counts.revenue, 2),
                    ctr=_rate(counts.clicks, shown),
                    conversion=_rate(counts.purchases, shown),
                )
            )
        return PlacementExperiment(placement=placement, experiment=experiment, results=results)

    @router.get(
        "/experiments",
        summary="Every placement's experiment, with each variant's results",
        dependencies=[Depends(access.require("read"))],
    )
    async def every_experiment() -> list[PlacementExperiment]:
        return [with_results(name, experiment) for name, experiment in sorted(book.entries.items())]

    @router.get(
        "/experiments/{placement}",
        summary="A placement's experiment, with each variant's results",
        dependencies=[Depends(access.require("read"))],
    )
    async def one_experiment(placement: str = placement_path()) -> PlacementExperiment:
        experiment = book.get(placement)
        if experiment is None:
            raise HTTPException(404, f"placement {placement!r} runs no experiment")
        return with_results(placement, experiment)

    if writer is None:  # a read-only server (no Kafka connection): no endpoints that change
        return router

    @router.put(
        "/experiments/{placement}",
        summary="Start or change a placement's experiment (admin): in force here when answered",
        dependencies=[Depends(access.require("admin"))],
    )
    async def set_experiment(experiment: Experiment, placement: str = placement_path()) -> PlacementExperiment:
        await write_and_apply(book, writer, placement, experiment)
        return with_results(placement, experiment)

    @router.delete(
        "/experiments/{placement}",
        summary="End a placement's experiment (admin): its answers follow the placement's rule again",
        dependencies=[Depends(access.require("admin"))],
    )
    async def end_experiment(placement: str = placement_path()) -> PlacementExperiment:
        await write_and_apply(book, writer, placement, None)
        return PlacementExperiment(placement=placement, experiment=None)

    return router


def _rate(successes: int, trials: int) -> Rate | None:
    interval = wilson_interval(successes, trials)
    if interval is None:
        return None
    return Rate(value=round(successes / trials, 6), low=round(interval[0], 6), high=round(interval[1], 6))
