"""The HTTP API and the worker's HTTP port fuzzed from their own OpenAPI
schemas (schemathesis): valid and invalid requests alike get an answer below
500, in time."""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable

from streamrec.broker import port_open
from streamrec.foundation.http import serve_http
from streamrec.foundation.schema import Item
from streamrec.foundation.store import ModelStore
from streamrec.serving.api import create_api
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.serving.serving_index import ServingIndex
from streamrec.streams.web import create_worker_api
from tests.conftest import free_port
from tests.integration.helpers import RunningWorker, until
from tests.versions import publish_random_version

EXAMPLES = [pytest.param(60, id="60"), pytest.param(1000, id="1000", marks=pytest.mark.slow)]  # per operation and mode
ITEMS = [Item(f"i{n}", f"item {n} lamp", f"c{n % 5}") for n in range(200)]


def fuzz(base_url: str, examples: int) -> tuple[int, list[str]]:
    """Every operation of the schema at `base_url`, in both schemathesis modes
    (requests that conform to the schema, and ones that do not)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    tried, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis_settings(
                max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                nonlocal tried
                tried += 1
                response = case.call(base_url=base_url, timeout=10)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query}: {response.status_code}")

            try:
                call()
            except Unsatisfiable:  # no invalid request exists (an operation without parameters)
                assert mode is schemathesis.GenerationMode.NEGATIVE
    return tried, failures


async def _serve_and_fuzz(app, port: int, examples: int) -> tuple[int, list[str]]:
    stop = asyncio.Event()
    server = asyncio.create_task(serve_http(app, "127.0.0.1", port, stop))
    try:
        await until(lambda: port_open("127.0.0.1", port) or server.done(), what="the HTTP port")
        return await asyncio.to_thread(fuzz, f"http://127.0.0.1:{port}", examples)
    finally:
        stop.set()
        await server


@pytest.mark.parametrize("examples", EXAMPLES)
def test_the_api_answers_every_fuzzed_request_below_500(tmp_path, settings, examples):
    version = publish_random_version(ModelStore(tmp_path / "models"), ITEMS)
    settings = settings.derive(data_dir=tmp_path, index_kind="flat")
    live = LiveModel(LiveConfig.from_settings(settings))
    live.current = ServingIndex(version, live.settings.spec, ITEMS, live.settings.serving)
    tried, failures = asyncio.run(_serve_and_fuzz(create_api(live), free_port(), examples))
    print(f"API: {tried} fuzzed requests, {len(failures)} answered 5xx")
    assert not failures and tried > 5 * examples, failures[:5]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_the_workers_port_answers_every_fuzzed_request_below_500(kafka, settings, examples):
    async def scenario() -> tuple[int, list[str]]:
        running = await RunningWorker(settings, kafka).start()
        await until(lambda: running.worker.status.ready, what="the worker's partitions")
        try:
            return await _serve_and_fuzz(create_worker_api(running.worker), free_port(), examples)
        finally:
            await running.stop()

    tried, failures = asyncio.run(scenario())
    print(f"worker: {tried} fuzzed requests, {len(failures)} answered 5xx")
    assert not failures and tried > 2 * examples, failures[:5]
