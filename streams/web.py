"""The worker's HTTP port: a user's live features, health and metrics.

A user's state lives in the worker that owns the user's partition. A request
that reaches another worker is forwarded once to the owner, found in the owner
map the group assignor hands every member.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from foundation.http import API_KEY_HEADER, Access
from foundation.kafka import partition_for
from streams.worker import StreamWorker

FORWARDED_HEADER = "x-streamrec-forwarded"


def create_worker_api(worker: StreamWorker) -> FastAPI:
    api = FastAPI(title="streamrec worker", description="Live user features held by the stream workers.")
    max_id = worker.settings.max_id_chars
    half_life = worker.settings.affinity_half_life_s

    access = Access.from_settings(worker.settings)
    forwarded_headers = {FORWARDED_HEADER: "1"}
    if access.admin_key is not None:
        forwarded_headers[API_KEY_HEADER] = access.admin_key

    @api.get(
        "/users/{user_id}",
        summary="A user's features as the streams side holds them (an admin key, when keys are set)",
        dependencies=[Depends(access.require("admin"))],
    )
    async def get_user(request: Request, user_id: str = Path(..., max_length=max_id)) -> JSONResponse:
        partition = partition_for(user_id, worker.partition_count())
        if partition in worker.users.partitions:
            user = worker.users.get(partition, user_id)
            if user is None:
                raise HTTPException(404, f"unknown user {user_id!r}: no event of this user has been processed")
            return JSONResponse(user.to_view(user.last_ts, half_life))  # affinities at the user's event time
        owner = worker.assignor.owner_urls.get(partition)
        if owner is None or owner == worker.settings.worker_url or request.headers.get(FORWARDED_HEADER):
            raise HTTPException(503, f"partition {partition} of user {user_id!r} is being reassigned; retry shortly")
        async with httpx.AsyncClient(timeout=5.0) as client:
            try:
                # Escaped: an id holding '?', '#' or '%' must reach the owner as the same id.
                answer = await client.get(f"{owner}/users/{quote(user_id, safe='')}", headers=forwarded_headers)
            except httpx.HTTPError as exc:
                raise HTTPException(502, f"worker {owner} owning partition {partition} did not answer: {exc}") from None
        return JSONResponse(answer.json(), status_code=answer.status_code)

    @api.get("/healthz", summary="200 once partitions are assigned and their state restored")
    async def healthz() -> JSONResponse:
        ready = worker.status.ready
        return JSONResponse(
            {"ready": ready, "partitions": sorted(worker.users.partitions), "lag": worker.lag()},
            status_code=200 if ready else 503,
        )

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        dependencies=[Depends(access.require("read"))],
    )
    async def metrics() -> PlainTextResponse:
        worker.metrics.lag.set(worker.lag())
        return PlainTextResponse(generate_latest(worker.metrics.registry).decode())

    return api
