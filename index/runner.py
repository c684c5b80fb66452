"""Running the API server: follow the catalog, features and model versions, serve HTTP."""

from __future__ import annotations

import asyncio
import logging

from index.api import create_api
from index.live import LiveModel
from streamrec.http import serve_http
from streamrec.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


async def run_server(settings: Settings, bootstrap: str, stop: asyncio.Event, live: LiveModel | None = None) -> LiveModel:
    """Serve until `stop`; pass a `live` model to watch it (tests, the demo)."""
    await ensure_topics(settings, bootstrap)
    live = live or LiveModel(settings)
    await live.start(bootstrap)
    follow = asyncio.create_task(live.follow(stop))
    log.info("API on http://%s:%d (OpenAPI at /docs), model %s", settings.api_host, settings.api_port, live.version)
    web = asyncio.create_task(serve_http(create_api(live), settings.api_host, settings.api_port, stop))
    try:
        done, _ = await asyncio.wait({web, follow}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                log.error("server stopping: %s: %s", type(task.exception()).__name__, task.exception(), exc_info=task.exception())
            task.result()  # a crashed follower or a port in use ends the server with its error
    finally:
        stop.set()
        await asyncio.gather(follow, web, return_exceptions=True)
        await live.stop()
    return live
