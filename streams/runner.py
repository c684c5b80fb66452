"""Running one worker process: the stream loop beside its HTTP port."""

from __future__ import annotations

import asyncio
import logging

from streamrec.http import serve_http
from streamrec.settings import Settings
from streams.web import create_worker_api
from streams.worker import StreamWorker

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings, bootstrap: str, stop: asyncio.Event, worker: StreamWorker | None = None
) -> StreamWorker:
    """Run until `stop` is set, then flush, commit and leave the group cleanly.

    Pass a `worker` to watch it while it runs (the demo's dashboard does).
    """
    worker = worker or StreamWorker(settings, bootstrap)
    await worker.start()
    web = asyncio.create_task(
        serve_http(create_worker_api(worker), settings.worker_host, settings.worker_port, stop)
    )
    loop = asyncio.create_task(worker.run())
    tasks = {web, loop}
    if settings.publish_recommendations:
        from index.publisher import attach_publisher  # torch and faiss load only when publishing

        worker.publisher = await attach_publisher(worker, settings, bootstrap)
        tasks.add(asyncio.create_task(worker.publisher.run(stop)))
    log.info("worker up: HTTP %s, group %s", settings.worker_url, f"{settings.app_id}-worker")
    try:
        done, _ = await asyncio.wait({*tasks, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        for task in done & tasks:
            task.result()  # a crashed loop or a port in use ends the worker with its error
    finally:
        worker.stop()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.close()
    return worker
