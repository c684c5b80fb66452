"""`streamrec bench http`: p50/p99 of `GET /recommendations` over HTTP against
a server holding N items (synthetic item vectors, see `streamrec.bench.index`),
and with a business rule, what the rule costs (its requests alternate with
plain ones on the same server).
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamrec.bench.index import embedding_like
from streamrec.embeddings.encoding import ModelConfig
from streamrec.embeddings.model import TwoTower
from streamrec.embeddings.versions import ModelVersion
from streamrec.foundation.codec import encode
from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.store import Manifest
from streamrec.serving.live import LiveConfig


def _synthetic_version(items: int, dim: int, settings) -> ModelVersion:
    """A version over `items` synthetic item vectors (the item tower over a
    million titles would take minutes and change nothing here) with a real,
    untrained user tower of the configured size."""
    config = replace(ModelConfig.from_settings(settings), dim=dim)
    ids = [f"i{n}" for n in range(items)]
    popularity = np.random.default_rng(2).pareto(1.5, items).astype(np.float32)
    return ModelVersion(
        "bench",
        Path("."),
        TwoTower(config).eval(),
        config,
        ids,
        embedding_like(items, dim),
        popularity,
        Manifest(created=time.time()),
    )


def _users(count: int, items: int, seed: int = 3) -> list[UserFeatures]:
    rng = np.random.default_rng(seed)
    users = []
    for u in range(count):
        user = UserFeatures(f"u{u}")
        for e in range(int(rng.integers(3, 30))):
            kind = "purchase" if e % 7 == 6 else "click"
            apply_event(
                user,
                Event(f"e{u}-{e}", kind, user.user_id, f"i{rng.integers(items)}", time.time() - 1000 + e),
                f"c{e % 7}",
                FeatureConfig(),
            )
        users.append(user)
    return users


def _connect(host: str, port: int) -> http.client.HTTPConnection:
    """A keep-alive connection once the server answers (it may still be binding)."""
    deadline = time.monotonic() + 60
    while True:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return connection
        except ConnectionError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _time_requests(host: str, port: int, paths: list[str], results: multiprocessing.Queue) -> None:
    """The client, in its own process so that it shares no interpreter lock with the server."""
    connection = _connect(host, port)
    times, failures = [], []
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
        times.append(time.perf_counter() - started)
        if answer.status != 200:
            failures.append(f"{path}: {answer.status} {body[:200]!r}")
    connection.close()
    results.put((times, failures))


def bench_http(
    settings,
    items: int,
    users: int,
    requests: int,
    dim: int = 64,
    rule: Rule | None = None,
    on_status: Callable[[str], None] = lambda text: None,
) -> dict:
    """p50/p99 of `GET /recommendations/{user}` over HTTP (keep-alive, one
    client process) against a server holding `items` items and `users` users;
    one request in ten is for an unknown user (the cold-start answer). With a
    `rule`, every other request names a placement under it (the catalog's 7
    categories are c0 to c6; `attributes` none), and each half is measured."""
    from streamrec.foundation.http import serve_http
    from streamrec.serving.api import create_api
    from streamrec.serving.live import LiveModel
    from streamrec.serving.serving_index import ServingIndex

    on_status(f"building the {settings.index_kind} index over {items:,} items ...")
    version = _synthetic_version(items, dim, settings)
    catalog = [Item(f"i{n}", f"item {n}", f"c{n % 7}") for n in range(items)]
    live = LiveModel(LiveConfig.from_settings(settings))
    live.current = ServingIndex(
        version, live.settings.spec, catalog, live.settings.serving, threads=settings.index_threads or None
    )
    del catalog
    for user in _users(users, items):
        live.features.apply(user.user_id.encode(), encode(user.to_wire()))
    rng = np.random.default_rng(4)
    paths = [
        f"/recommendations/u{rng.integers(users)}?k=10" if n % 10 else f"/recommendations/new{n}?k=10"
        for n in range(requests + 100)
    ]
    if rule is not None:
        live.rules.entries[BENCH_PLACEMENT] = rule
        paths = [path + (f"&placement={BENCH_PLACEMENT}" if n % 2 else "") for n, path in enumerate(paths)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    client = context.Process(target=_time_requests, args=(settings.api_host, settings.api_port, paths, results))

    async def serve_and_measure() -> tuple[list[float], list[str]]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve_http(create_api(live), settings.api_host, settings.api_port, stop))
        on_status(f"{requests:,} requests ...")
        client.start()
        try:
            return await asyncio.to_thread(results.get, True, 600)
        finally:
            stop.set()
            await server
            client.join(timeout=10)

    times, failures = asyncio.run(serve_and_measure())
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    timed = np.asarray(times) * 1000
    plain = _percentiles(timed[100:] if rule is None else timed[100::2])  # the first hundred warm up
    report: dict[str, object] = {
        "benchmark": "http",
        "items": items,
        "users": users,
        "requests": requests,
        "index": live.current.index.spec.label(),
        "cold_start_share": 0.1,
        **plain,
    }
    if rule is not None:
        ruled = _percentiles(timed[101::2])
        report |= {f"rule_{name}": value for name, value in ruled.items()}
        report |= {"rule": rule.model_dump(mode="json", exclude_defaults=True), "rule_p99_ratio": _ratio(ruled, plain)}
    return report


BENCH_PLACEMENT = "bench"


def _percentiles(ms: np.ndarray) -> dict[str, float]:
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def _ratio(ruled: dict[str, float], plain: dict[str, float]) -> float:
    return round(ruled["p99_ms"] / plain["p99_ms"], 3)
