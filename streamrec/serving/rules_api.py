"""The placements' rules over HTTP: anyone with a read key lists them, an
admin key changes them (in force here when answered, everywhere within a poll)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from streamrec.foundation.http import Access
from streamrec.foundation.rules import Rule
from streamrec.serving.live import LiveModel
from streamrec.serving.placement_api import PlacementWriter, placement_path, write_and_apply


class PlacementRule(BaseModel):
    placement: str
    rule: Rule | None


def rules_router(live: LiveModel, writer: PlacementWriter | None, access: Access) -> APIRouter:
    router = APIRouter()
    book = live.rules

    @router.get("/rules", summary="Every placement's rule", dependencies=[Depends(access.require("read"))])
    async def every_rule() -> list[PlacementRule]:
        return [PlacementRule(placement=name, rule=rule) for name, rule in sorted(book.entries.items())]

    @router.get("/rules/{placement}", summary="A placement's rule", dependencies=[Depends(access.require("read"))])
    async def one_rule(placement: str = placement_path()) -> PlacementRule:
        rule = book.get(placement)
        if rule is None:
            raise HTTPException(404, f"placement {placement!r} has no rule: its answers are the model's")
        return PlacementRule(placement=placement, rule=rule)

    if writer is None:  # a read-only server (no Kafka connection): no endpoints that change
        return router

    @router.put(
        "/rules/{placement}",
        summary="Set a placement's rule (admin): in force here when answered, everywhere within seconds",
        dependencies=[Depends(access.require("admin"))],
    )
    async def set_rule(rule: Rule, placement: str = placement_path()) -> PlacementRule:
        await write_and_apply(book, writer, placement, rule)
        return PlacementRule(placement=placement, rule=rule)

    @router.delete(
        "/rules/{placement}",
        summary="Remove a placement's rule (admin)",
        dependencies=[Depends(access.require("admin"))],
    )
    async def remove_rule(placement: str = placement_path()) -> PlacementRule:
        await write_and_apply(book, writer, placement, None)
        return PlacementRule(placement=placement, rule=None)

    return router
