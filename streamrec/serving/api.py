"""The HTTP API of docs/architecture.md: recommendations, similar items, search.

Handlers are `async` and run on the event loop that also applies catalog
changes, so an index is never searched while it is being added to. Each
handler reads `live.current` once: a swap during a request does not touch it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from streamrec.foundation.buy_again import buy_again
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.http import Access, add_metrics
from streamrec.foundation.placement_book import PLACEMENT_PATTERN
from streamrec.foundation.popular import LIVE_POPULARITY, LivePopularity
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Item, ScoredItem
from streamrec.foundation.settings import ApiSettings
from streamrec.serving.api_models import BuyAgain, Health, Recommendations, SearchResults, SimilarItems
from streamrec.serving.arms import Plan
from streamrec.serving.experiments_api import Answers, experiments_router
from streamrec.serving.live import LiveModel
from streamrec.serving.placement_api import PlacementWriter
from streamrec.serving.rules_api import rules_router
from streamrec.serving.serving_index import ServingIndex


class ApiMetrics:
    def __init__(self, live: LiveModel) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "streamrec_api_request_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self.items = Gauge("streamrec_index_items", "Rows in the serving index.", registry=self.registry)
        self.users = Gauge("streamrec_feature_replica_users", "Users in the feature replica.", registry=self.registry)
        self.age = Gauge("streamrec_model_age_seconds", "Age of the served model version.", registry=self.registry)
        self.version = Gauge(
            "streamrec_model_info", "The served model version (label).", ["version"], registry=self.registry
        )
        arm = ["placement", "experiment", "variant"]
        self.answers = Gauge(
            "streamrec_answers", "Answers this server made per arm (docs/experiments.md).", arm, registry=self.registry
        )
        self.attributed = Gauge(
            "streamrec_attributed_events",
            "Clicks and purchases sent back with an arm's recommendation ids, every worker's.",
            [*arm, "type"],
            registry=self.registry,
        )
        self.revenue = Gauge(
            "streamrec_attributed_revenue", "The attributed purchases' revenue per arm.", arm, registry=self.registry
        )
        self.live = live

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)

    def refresh(self) -> None:
        self._refresh_arms()
        current = self.live.current
        if current is None:
            return
        self.items.set(current.index.ntotal)
        self.age.set(time.time() - current.version.manifest.created)
        self.version.clear()
        self.version.labels(current.version.version).set(1)
        self.users.set(len(self.live.features))

    def _refresh_arms(self) -> None:
        for gauge in (self.answers, self.attributed, self.revenue):
            gauge.clear()
        for key, answers in self.live.answers.by_arm.items():
            self.answers.labels(*key.split("~")).set(answers)
        for key, counts in self.live.arm_counts.totals().items():
            labels = key.split("~")
            self.attributed.labels(*labels, "click").set(counts.clicks)
            self.attributed.labels(*labels, "purchase").set(counts.purchases)
            self.revenue.labels(*labels).set(counts.revenue)


# An item endpoint's question to the served index: (index, item_id, k, rule) -> the answer, None for an unknown item.
ItemQuestion = Callable[[ServingIndex, str, int, Rule | None], list[ScoredItem] | None]
ITEM_ROUTES: list[tuple[str, str, ItemQuestion, str]] = [
    ("/items/{item_id}/similar", "similar", ServingIndex.similar, "Items near an item"),
    (
        "/items/{item_id}/bought-together",
        "bought_together",
        ServingIndex.bought_together,
        "Items bought in the same baskets as an item (then similar ones, to fill k)",
    ),
]


def _items(answer: list[ScoredItem], catalog: Mapping[str, Item] | None = None) -> list[dict]:
    """The wire form of an answer; with a `catalog`, each item also carries the
    title and category a person reads (the default wire stays compact)."""
    if catalog is None:
        return [scored.to_wire() for scored in answer]
    return [{**scored.to_wire(), **_described(catalog.get(scored.item_id))} for scored in answer]


def _described(item: Item | None) -> dict:
    return {} if item is None else {"title": item.title, "category": item.category}


@dataclass(frozen=True)
class _Serving:
    """What every endpoint reads: the live model, its metrics and the lookups shared by the routes."""

    live: LiveModel
    metrics: ApiMetrics
    pseudonym: Pseudonyms
    fallback: LivePopularity

    def index(self) -> ServingIndex:
        current = self.live.current
        if current is None:
            raise HTTPException(503, "no model is being served yet: run `streamrec train` (the server picks it up)")
        return current

    def user(self, user_id: str) -> UserFeatures | None:
        """The features of the shop's user `user_id` (the replica holds stored ids)."""
        return self.live.features.get(self.pseudonym(user_id))

    def catalog(self, details: bool) -> Mapping[str, Item] | None:
        return self.live.catalog.items if details else None

    def answered(self, plan: Plan) -> dict:
        """The fields an answer under `plan` carries: its new recommendation id, its variant in an experiment."""
        arm = plan.arm
        fields = {"recommendation_id": self.live.answers.new_id(arm)}
        if arm.variant:
            fields["variant"] = arm.variant
        return fields


def create_api(
    live: LiveModel,
    metrics: ApiMetrics | None = None,
    writer: PlacementWriter | None = None,
    answers: Answers | None = None,
) -> FastAPI:
    """The API's endpoints; /metrics too unless it has a port of its own.
    Rules and experiments are changed through `writer` (without it, only
    read); an experiment's answers are `answers()` (default: this server's)."""
    settings = live.settings
    metrics = metrics or ApiMetrics(live)
    api = FastAPI(title="streamrec", description="Real-time recommendations, similar items and personalised search.")
    access = Access.from_settings(settings.access)
    fallback = LivePopularity(
        live.item_stats.popularity,
        live.catalog.items,
        settings.features.affinity_half_life_s,
        settings.serving.exclude_clicked,
    )
    serving = _Serving(live, metrics, Pseudonyms.from_settings(settings.access), fallback)
    readers = [Depends(access.require("read"))]
    api.include_router(_user_routes(serving), dependencies=readers)
    api.include_router(_item_routes(serving), dependencies=readers)
    api.include_router(rules_router(live, writer, access))
    api.include_router(experiments_router(live, writer, access, answers or (lambda: live.answers.by_arm)))
    api.include_router(_health_routes(serving))
    if not settings.api.metrics_port:
        add_metrics(api, metrics.render, access)
    return api


def _options(settings: ApiSettings) -> tuple[Any, Any, Any]:
    """The `k`, `details` and `placement` query options every listing endpoint takes."""
    k = Query(10, ge=1, le=settings.max_k, description="How many items.")
    details = Query(False, description="Each item carries its title and category, where the catalog has it.")
    placement = Query(
        None,
        pattern=PLACEMENT_PATTERN,
        description="Where the answer is shown: its business rule applies (default: the `default` placement's).",
    )
    return k, details, placement


def _user_routes(serving: _Serving) -> APIRouter:
    settings, metrics = serving.live.settings, serving.metrics
    max_id = settings.limits.max_id_chars
    K, DETAILS, PLACEMENT = _options(settings.api)
    router = APIRouter()

    @router.get(
        "/recommendations/{user_id}",
        summary="Top-k items for a user (cold start for unknown users; live popularity before the first model)",
        response_model=Recommendations,
        response_model_exclude_unset=True,
    )
    async def recommendations(
        user_id: str = Path(..., min_length=1, max_length=max_id),
        k: int = K,
        diversity: float = Query(
            settings.serving.diversity,
            ge=0,
            le=1,
            description="0: by score; up to 1: at most ceil(k (1 - d)) per category.",
        ),
        explain: bool = Query(
            False,
            description="Each item carries `because` (the recent item it is most like) and `source` (what ranked it).",
        ),
        details: bool = DETAILS,
        placement: str | None = PLACEMENT,
    ) -> dict:
        with metrics.latency.labels("recommendations").time():
            current, plan = serving.live.current, serving.live.plan(placement, user_id)
            if plan.diversity is not None:
                diversity = plan.diversity
            user, rule = serving.user(user_id), plan.rule
            if current is None:  # before the first model: what the stream knows
                answer, version = serving.fallback.recommend(user, k, rule), LIVE_POPULARITY
            else:
                answer = current.recommend(user, k, diversity=diversity, explain=explain, rule=rule)
                version = current.version.version
            items = _items(answer, serving.catalog(details))
            return {"user_id": user_id, "items": items, "model_version": version, **serving.answered(plan)}

    @router.get(
        "/users/{user_id}/buy-again",
        summary="The user's own purchases, ranked by how often and how lately (no model needed)",
        response_model=BuyAgain,
        response_model_exclude_unset=True,
    )
    async def again(
        user_id: str = Path(..., min_length=1, max_length=max_id), k: int = K, details: bool = DETAILS
    ) -> dict:
        with metrics.latency.labels("buy_again").time():
            features = serving.user(user_id)
            ranked = buy_again(features, settings.api.buy_again_half_life_s, k) if features is not None else []
            described = serving.catalog(details) or {}
            items = [
                {
                    "item_id": item,
                    "score": round(score, 6),
                    "purchases": count,
                    "last_ts": ts,
                    **_described(described.get(item)),
                }
                for item, score, count, ts in ranked
            ]
            return {"user_id": user_id, "items": items, "source": "buy_again"}

    return router


def _item_routes(serving: _Serving) -> APIRouter:
    settings, metrics = serving.live.settings, serving.metrics
    max_id = settings.limits.max_id_chars
    K, DETAILS, PLACEMENT = _options(settings.api)
    router = APIRouter()

    def item_answer(endpoint: str, ask: ItemQuestion) -> Callable[..., Awaitable[dict]]:
        """An item endpoint: `ask`'s answer from the served index, or 404 for an item it does not know."""

        async def answer(
            item_id: str = Path(..., min_length=1, max_length=max_id),
            k: int = K,
            details: bool = DETAILS,
            placement: str | None = PLACEMENT,
        ) -> dict:
            with metrics.latency.labels(endpoint).time():
                current, plan = serving.index(), serving.live.plan(placement, None)
                found = ask(current, item_id, k, plan.rule)
                if found is None:
                    raise HTTPException(404, f"unknown item {item_id!r}: not in the catalog or the model")
                items = _items(found, serving.catalog(details))
                version = current.version.version
                return {"item_id": item_id, "items": items, "model_version": version, **serving.answered(plan)}

        return answer

    for path, endpoint, ask, summary in ITEM_ROUTES:
        router.add_api_route(
            path,
            item_answer(endpoint, ask),
            methods=["GET"],
            name=endpoint,  # the OpenAPI operation id clients generate their method names from
            summary=summary,
            response_model=SimilarItems,
            response_model_exclude_unset=True,
        )

    @router.get(
        "/search",
        summary="Personalised search: semantic candidates, exact title matches first",
        response_model=SearchResults,
        response_model_exclude_unset=True,
    )
    async def search(
        q: str = Query(..., min_length=1, max_length=settings.limits.max_text_chars, description="Search text."),
        user_id: str | None = Query(None, min_length=1, max_length=max_id, description="Personalise for this user."),
        k: int = K,
        details: bool = DETAILS,
        placement: str | None = PLACEMENT,
    ) -> dict:
        with metrics.latency.labels("search").time():
            if not q.strip():
                raise HTTPException(422, "q is blank")
            current, plan = serving.index(), serving.live.plan(placement, None)
            answer = current.search(q, k, serving.user(user_id) if user_id else None, rule=plan.rule)
            items = _items(answer, serving.catalog(details))
            version = current.version.version
            return {"query": q, "user_id": user_id, "items": items, "model_version": version, **serving.answered(plan)}

    return router


def _health_routes(serving: _Serving) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/healthz",
        summary="200 when serving a model, 503 before",
        response_model=Health,
        responses={503: {"model": Health, "description": "No model is served yet."}},
    )
    async def healthz() -> JSONResponse:
        live = serving.live
        current = live.current
        body = {"model_version": live.version, "items": current.index.ntotal if current else 0, "swaps": live.swaps}
        return JSONResponse(body, status_code=200 if current is not None else 503)

    return router
