"""The HTTP API's answers as typed models: the OpenAPI schema that a shop's
client (in any language) generates its types from. Optional fields are left
out of an answer that does not carry them (the default wire stays compact)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    because: str | None = Field(None, description="With explain: the user's recent item it is most like.")
    source: str | None = Field(
        None,
        description=(
            "With explain: what ranked it (towers, neighbours, popularity); "
            "always in bought-together answers (bought_together or similar)."
        ),
    )
    title: str | None = Field(None, description="With details, where the catalog has it.")
    category: str | None = Field(None, description="With details, where the catalog has it.")


class Recommendations(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    model_version: str = Field(description="The version that answered, or live-popularity before the first model.")
    recommendation_id: str = Field(
        description="Send it back on the clicks and purchases this answer led to: they are attributed to it."
    )
    variant: str | None = Field(None, description="The experiment's variant that answered, in an experiment.")


class BoughtItem(BaseModel):
    item_id: str
    score: float
    purchases: int
    last_ts: float = Field(description="The user's last purchase of it (event time, Unix seconds).")
    title: str | None = None
    category: str | None = None


class BuyAgain(BaseModel):
    user_id: str
    items: list[BoughtItem]
    source: Literal["buy_again"]


class SimilarItems(BaseModel):
    item_id: str
    items: list[RecommendedItem]
    model_version: str
    recommendation_id: str = Field(
        description="Send it back on the clicks and purchases this answer led to: they are attributed to it."
    )


class SearchResults(BaseModel):
    query: str
    user_id: str | None
    items: list[RecommendedItem]
    model_version: str
    recommendation_id: str = Field(
        description="Send it back on the clicks and purchases this answer led to: they are attributed to it."
    )


class Health(BaseModel):
    model_version: str | None
    items: int = Field(description="Rows in the serving index.")
    swaps: int = Field(description="Model versions swapped in since the start.")
