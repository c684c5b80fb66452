"""The web console in a real browser (Debian's Chromium, driven by Playwright)
against a real server and worker on a real broker, with a trained model.

Every request the page makes to anything but the server is blocked and
counted: the page must work without the network. With
STREAMREC_CONSOLE_SCREENSHOTS=DIR the screenshots go to DIR (the README's
come from `make console-screenshots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from foundation.kafka import start_producer
from foundation.schema import Event
from foundation.store import ModelStore
from foundation.topics import Topics
from index.live import LiveModel
from streamrec.processes import WorkerProcess, run_server
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from tests.conftest import free_port
from tests.integration.helpers import until
from tests.versions import publish_trained_version
from trainer.schedule import train_once

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make test` installs Debian's")
READER, ADMIN = "reader-key", "admin-key"
SHOP = ShopConfig(users=200, items=300, seed=7)
SMALL_TRAINING = {
    "model_dim": 16, "model_hidden": 32, "model_id_buckets": 4096, "model_text_buckets": 4096,
    "model_max_recent": 10, "train_epochs": 3, "train_batch_size": 128, "train_random_negatives": 64,
}  # fmt: skip


async def _traffic(kafka, settings, stop: asyncio.Event) -> None:
    """The simulated shop's events at about 200/s until `stop`."""
    shop = Shop(SHOP)
    async with ShopProducer(kafka, settings) as producer:
        for record in shop.stream(10**9):
            if stop.is_set():
                return
            if isinstance(record, Event):
                record.ts = time.time()
                await producer.send_event(record)
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def _running(kafka, settings, items):
    async with ShopProducer(kafka, settings) as producer:
        await producer.send_catalog(items)
    stop = asyncio.Event()
    live = LiveModel(settings)
    running = [
        asyncio.create_task(WorkerProcess(settings, kafka).run(stop)),  # with its publisher
        asyncio.create_task(run_server(settings, kafka, stop, live)),
        asyncio.create_task(_traffic(kafka, settings, stop)),
    ]
    try:
        await until(lambda: live.current is not None, 60, "the first index")
        yield live
    finally:
        stop.set()
        await asyncio.gather(*running)


def test_the_console_shows_the_live_system_and_answers_like_the_api(kafka, settings, tmp_path):
    from playwright.async_api import async_playwright

    settings = settings.derive(api_port=free_port(), index_kind="flat", api_keys=READER, admin_api_keys=ADMIN,
                               publish_recommendations=True)  # fmt: skip
    store = ModelStore.from_settings(settings)
    _, items = publish_trained_version(store, SHOP, events=6000, epochs=3)
    reports = settings.data_dir / "reports"
    reports.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "figures" / "demo.png", reports / "demo.png")
    (reports / "demo.json").write_text('{"rate_events_per_s": 500.0, "median_p99_ms": 512.0}')
    shots = Path(os.environ.get("STREAMREC_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    base = f"http://{settings.api_host}:{settings.api_port}"
    blocked: list[str] = []

    async def scenario():
        async with _running(kafka, settings, items) as live, async_playwright() as playwright:
            # A version from the trainer itself (window, test figures, gate), after one published by hand.
            await until(lambda: live.item_stats.events_counted() >= 3000, 60, "3,000 events counted")
            await train_once(settings.derive(**SMALL_TRAINING), kafka, force=True)
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = await browser.new_context(viewport={"width": 1280, "height": 900})

            async def only_the_server(route):
                if route.request.url.startswith(base):
                    await route.continue_()
                else:
                    blocked.append(route.request.url)
                    await route.abort()

            await context.route("**/*", only_the_server)
            await context.add_init_script(f"localStorage.setItem('streamrec-key', '{ADMIN}')")
            page = await context.new_page()
            await page.goto(f"{base}/console")

            # Overview: events counted by the workers, publishes and a dead letter reach the page.
            poison = await start_producer(kafka)
            await poison.send_and_wait(Topics.from_settings(settings).clicks, b"\xc1 not an event", key=b"u1")
            await poison.stop()
            for shown in ("#events-per-s", "#publishes-per-s", "#dead-letters"):
                await page.wait_for_function(
                    f"Number(document.querySelector('{shown}').textContent) > 0", timeout=60_000
                )
            await page.wait_for_function("!document.querySelector('#dead-table td.none')", timeout=30_000)
            await page.wait_for_function("document.querySelectorAll('#lag-table tr').length > 1", timeout=30_000)
            await page.wait_for_timeout(6000)  # a few more points in the charts
            await page.screenshot(path=shots / "overview.png")

            # Playground: the page's answer is the API's.
            user = next(u for u in (f"u{n}" for n in range(SHOP.users)) if live.features.get(u) is not None)
            await page.click("nav button[data-page=playground]")
            await page.fill("#user-id", user)
            await page.click("#user-form button")
            await page.wait_for_selector("#recommendations tbody tr")
            shown = await page.eval_on_selector_all(
                "#recommendations tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
            )
            async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": READER}) as http:
                answer = (await http.get(f"/recommendations/{user}?k=10&explain=true&details=true&diversity=0")).json()
            assert [re.search(r"\(([^()]*)\)$", text).group(1) for text in shown] == [
                item["item_id"] for item in answer["items"]
            ]
            await page.wait_for_selector("#features dl")  # the admin key sees the user's features

            # Search: the item whose title is asked for comes back.
            wanted = random.Random(3).choice(items)
            await page.uncheck("#search-personal")
            await page.fill("#query", wanted.title)
            await page.click("#search-form button")
            await page.wait_for_selector("#search-results tbody tr")
            found = await page.text_content("#search-results tbody")
            assert wanted.item_id in found
            await page.screenshot(path=shots / "playground.png", full_page=True)

            # Models: a read key cannot roll back.
            current = store.current()
            await page.fill("#api-key", READER)
            await page.dispatch_event("#api-key", "change")
            await page.click("nav button[data-page=models]")
            await page.wait_for_selector("#versions tbody tr")
            await page.click("#rollback")
            await page.wait_for_function("document.querySelector('#rollback-result').textContent.includes('403')")
            assert store.current() == current
            await page.screenshot(path=shots / "models.png", full_page=True)

            # Quality: the reports in DATA_DIR/reports.
            await page.click("nav button[data-page=quality]")
            await page.wait_for_selector("#reports img")
            await page.screenshot(path=shots / "quality.png", full_page=True)
            await browser.close()

    asyncio.run(scenario())
    assert blocked == []  # nothing but the server was asked for
