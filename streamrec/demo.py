"""`streamrec demo`: the whole system in one process on one machine.

Today: the broker (embedded unless STREAMREC_KAFKA_BOOTSTRAP is set), a
stream worker and simulated shop traffic, with a live dashboard.
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamrec.settings import Settings
from streams.producer import ShopProducer
from streams.runner import run_worker
from streams.simulate import Shop, ShopConfig, send_traffic
from streams.worker import StreamWorker


def dashboard(worker: StreamWorker, rate: float, started: float, settings: Settings) -> Table:
    table = Table(title="streamrec demo (Ctrl-C stops)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    status = worker.status
    table.add_row("running for", f"{time.monotonic() - started:,.0f} s")
    table.add_row("events processed", f"{status.events:,}" if status.ready else "joining the group ...")
    table.add_row("events/s", f"{rate:,.0f}")
    table.add_row("consumer lag", f"{worker.lag():,}")
    table.add_row("users held", f"{len(worker.users):,}")
    table.add_row("duplicates / dead letters", f"{status.duplicates:,} / {status.dead_letters:,}")
    table.add_row("user features", f"{settings.worker_url}/users/u0")
    return table


async def run_demo(settings: Settings, bootstrap: str, stop: asyncio.Event, *, rate: float, duration: float | None) -> None:
    console = Console()
    worker = StreamWorker(settings, bootstrap)
    worker_task = asyncio.create_task(run_worker(settings, bootstrap, stop, worker))
    shop = Shop(ShopConfig())
    async with ShopProducer(bootstrap, settings) as producer:
        traffic = asyncio.create_task(send_traffic(shop, producer, max_events=None, rate=rate))
        started = time.monotonic()
        last_events, last_time = 0, started
        with Live(dashboard(worker, 0.0, started, settings), console=console, refresh_per_second=2) as live:
            while not stop.is_set() and not traffic.done() and not worker_task.done():
                if duration is not None and time.monotonic() - started >= duration:
                    break
                await asyncio.sleep(1.0)
                now = time.monotonic()
                events = worker.status.events
                live.update(dashboard(worker, (events - last_events) / (now - last_time), started, settings))
                last_events, last_time = events, now
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
    stop.set()
    await worker_task

