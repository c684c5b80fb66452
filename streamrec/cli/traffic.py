"""`streamrec simulate` and `replay`: events into the shop's topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from streamrec.broker import kafka_connection
from streamrec.cli.common import LogFile, console, progress_bar, run_until_signal, with_log_options
from streamrec.foundation.settings import Settings


def simulate(
    events: Annotated[int, typer.Option(min=0, help="Events to send; 0: run until Ctrl-C.")] = 100_000,
    rate: Annotated[
        float | None,
        typer.Option(help="Events per second (wall-clock timestamps); unset: as fast as possible (simulated clock)."),
    ] = None,
    users: Annotated[int, typer.Option(help="Simulated users.")] = 2000,
    items: Annotated[int, typer.Option(help="Items at the start (more appear over time).")] = 2000,
    categories: Annotated[int, typer.Option(help="Categories (1-200).")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same events.")] = 7,
    new_item_every: Annotated[int, typer.Option(help="Events between new items (0: none).")] = 500,
    ground_truth: Annotated[Path | None, typer.Option(help="Write the planted structure (JSON) here.")] = None,
) -> None:
    """Send synthetic shop traffic with a planted structure and a ground truth."""
    from streamrec.shop.producer import ShopProducer
    from streamrec.shop.simulate import Shop, ShopConfig, send_traffic

    settings = Settings()
    shop = Shop(ShopConfig(users=users, items=items, categories=categories, seed=seed, new_item_every=new_item_every))
    limit = events or None

    async def go(stop: asyncio.Event) -> int:
        async with ShopProducer(kafka, settings) as producer:
            with progress_bar() as progress:
                task = progress.add_task("simulating", total=limit)
                report = lambda n: progress.update(task, completed=n)
                sending = asyncio.create_task(
                    send_traffic(shop, producer, max_events=limit, rate=rate, on_progress=report)
                )
                await asyncio.wait({sending, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    return await sending
                return producer.sent

    with kafka_connection(settings.kafka) as kafka:
        sent = run_until_signal(go)
    console.print(f"sent {sent} records ({len(shop.items)} items in the catalog)")
    if ground_truth is not None:
        ground_truth.parent.mkdir(parents=True, exist_ok=True)
        ground_truth.write_text(json.dumps(shop.ground_truth()))
        console.print(f"ground truth written to {ground_truth}")


@with_log_options
def replay(log: LogFile) -> None:
    """Replay an interaction log as events, in time order (the catalog first)."""
    from streamrec.shop.producer import ShopProducer
    from streamrec.shop.replay import send_replay

    settings = Settings()
    events, catalog = log.read(settings)

    async def go() -> None:
        async with ShopProducer(kafka, settings) as producer:
            with progress_bar() as progress:
                task = progress.add_task("replaying", total=len(events))
                await send_replay(producer, events, catalog, lambda n: progress.update(task, completed=n))

    with kafka_connection(settings.kafka) as kafka:
        asyncio.run(go())
    purchases = sum(e.type == "purchase" for e in events)
    console.print(f"replayed {len(catalog)} items, {len(events)} events ({purchases} purchases)")
