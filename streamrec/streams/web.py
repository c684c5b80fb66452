"""The worker's HTTP port: a user's live features, forgetting a user, health,
status and metrics.

A user's state lives in the worker that owns the user's partition. A request
that reaches another worker is forwarded once to the owner, found in the owner
map the group assignor hands every member, and only to an owner whose
advertised URL this worker vouches for (`Access.vouches_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse

from streamrec.foundation.control import send_forget
from streamrec.foundation.http import API_KEY_HEADER, Access, add_metrics
from streamrec.foundation.kafka import partition_for
from streamrec.streams.state import WorkerState

FORWARDED_HEADER = "x-streamrec-forwarded"


def render_metrics(worker: WorkerState) -> bytes:
    worker.metrics.lag.set(worker.lag())
    return worker.metrics.render()


def create_worker_api(worker: WorkerState, publisher_view: Callable[[], dict | None] = lambda: None) -> FastAPI:
    """The worker's endpoints; /metrics too unless it has a port of its own.
    `publisher_view` is what /status shows of the real-time publisher, if any."""
    settings = worker.settings
    api = FastAPI(title="streamrec worker", description="Live user features held by the stream workers.")
    user_id_path = Path(..., min_length=1, max_length=settings.limits.max_id_chars)
    half_life = settings.features.affinity_half_life_s
    pseudonym = worker.pseudonyms

    access = Access.from_settings(settings.access)
    readers, admins = [Depends(access.require("read"))], [Depends(access.require("admin"))]
    forwarded_headers = {FORWARDED_HEADER: "1"}
    if access.admin_key is not None:
        forwarded_headers[API_KEY_HEADER] = access.admin_key

    @api.get(
        "/users/{user_id}",
        summary="A user's features as the streams side holds them (an admin key, when keys are set)",
        dependencies=admins,
    )
    async def get_user(request: Request, user_id: str = user_id_path) -> JSONResponse:
        partition = partition_for(user_id, worker.partition_count())
        if partition in worker.users.partitions:
            user = worker.users.get(partition, pseudonym(user_id))
            if user is None:
                raise HTTPException(404, f"unknown user {user_id!r}: no event of this user has been processed")
            view = user.to_view(user.last_ts, half_life)  # affinities at the user's event time
            return JSONResponse({**view, "user_id": user_id})
        owner = worker.owners.get(partition)
        if owner is None or owner.url == settings.worker.url or request.headers.get(FORWARDED_HEADER):
            raise HTTPException(503, f"partition {partition} of user {user_id!r} is being reassigned; retry shortly")
        if not access.vouches_for(owner.url, owner.signature):
            raise HTTPException(502, f"the owner of partition {partition} advertised a URL this worker does not trust")
        async with httpx.AsyncClient(timeout=5.0) as client:
            try:
                # Escaped: an id holding '?', '#' or '%' must reach the owner as the same id.
                answer = await client.get(f"{owner.url}/users/{quote(user_id, safe='')}", headers=forwarded_headers)
            except httpx.HTTPError as exc:
                raise HTTPException(502, f"the worker owning partition {partition} did not answer: {exc}") from None
        return JSONResponse(answer.json(), status_code=answer.status_code)

    @api.delete(
        "/users/{user_id}",
        status_code=202,
        summary="Forget a user everywhere: features, replicas, published answers, the trainer's cache (admin key)",
        dependencies=admins,
    )
    async def forget_user(user_id: str = user_id_path) -> dict:
        sent = await send_forget(worker.producer, worker.topics, pseudonym, user_id)
        return {"user_id": user_id, "status": "requested", "partition": sent.partition, "offset": sent.offset}

    def health() -> dict:
        return {"ready": worker.status.ready, "partitions": sorted(worker.users.partitions), "lag": worker.lag()}

    @api.get("/healthz", summary="200 once partitions are assigned and their state restored")
    async def healthz() -> JSONResponse:
        answer = health()
        return JSONResponse(answer, status_code=200 if answer["ready"] else 503)

    @api.get(
        "/status", summary="This worker's partitions, lag and publisher (the console's view)", dependencies=readers
    )
    async def status() -> dict:
        return {
            "url": settings.worker.url,
            "engine": settings.worker.engine,
            **health(),
            "publisher": publisher_view(),
            "peers": sorted({tuple(owner) for owner in worker.owners.values()}),  # the group as assigned
        }

    if not settings.worker.metrics_port:
        add_metrics(api, lambda: render_metrics(worker), access)
    return api
