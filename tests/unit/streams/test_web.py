"""The worker's HTTP port without a broker: who may call what, and where /metrics lives."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import SecretStr

from streamrec.foundation.settings import Settings
from streamrec.streams.state import WorkerConfig
from streamrec.streams.web import create_worker_api
from streamrec.streams.worker import StreamWorker

KEYS = {"api_keys": SecretStr("reader"), "admin_api_keys": SecretStr("admin")}


def _statuses(settings: Settings, calls: list[tuple[str, str]], key: str | None) -> list[int]:
    app = create_worker_api(StreamWorker(WorkerConfig.from_settings(settings), "127.0.0.1:9"))  # never started
    headers = {} if key is None else {"X-API-Key": key}

    async def call() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            return [(await http.request(method, path, headers=headers)).status_code for method, path in calls]

    return asyncio.run(call())


def test_with_keys_every_endpoint_but_healthz_needs_one_and_users_need_admin():
    settings = Settings(**KEYS)
    calls = [("GET", "/users/u1"), ("DELETE", "/users/u1"), ("GET", "/metrics"), ("GET", "/healthz")]
    assert _statuses(settings, calls, None) == [401, 401, 401, 503]  # not ready: never started
    assert _statuses(settings, calls, "reader") == [403, 403, 200, 503]


def test_with_a_metrics_port_the_public_port_has_no_metrics():
    assert _statuses(Settings(worker_metrics_port=9100), [("GET", "/metrics")], None) == [404]
    assert _statuses(Settings(), [("GET", "/metrics")], None) == [200]
