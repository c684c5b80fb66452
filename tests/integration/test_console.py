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
import socket
import time
from pathlib import Path

import httpx
import pytest

from streamrec.foundation.kafka import start_producer
from streamrec.foundation.schema import Event
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics
from streamrec.processes import WorkerProcess, index_chooser, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.schedule import train_once
from tests.conftest import free_port
from tests.integration.helpers import until
from tests.versions import publish_trained_version

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make test` installs Debian's")
READER, ADMIN = "reader-key", "admin-key"
SHOP = ShopConfig(users=200, items=300, seed=7)
SMALL_TRAINING = {
    "model_dim": 16,
    "model_hidden": 32,
    "model_id_buckets": 4096,
    "model_text_buckets": 4096,
    "model_max_recent": 10,
    "train_epochs": 3,
    "train_batch_size": 128,
    "train_random_negatives": 64,
}


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
    live = LiveModel(LiveConfig.from_settings(settings))
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


async def _fits_a_phone(browser, route, base: str, shots: Path) -> None:
    """Every page at a phone's width: nothing wider than the screen but the
    tables made to scroll sideways."""
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    await phone.route("**/*", route)
    await phone.add_init_script(f"localStorage.setItem('streamrec-key', '{ADMIN}')")
    page = await phone.new_page()
    await page.goto(f"{base}/console")
    await page.wait_for_function("document.querySelectorAll('#workers-table tbody td').length > 1")
    for name in ("overview", "models", "playground", "experiments", "quality"):
        await page.click(f"nav button[data-page={name}]")
        await page.wait_for_timeout(500)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the {name} page is {width} px wide on a 390 px phone"
    await page.click("nav button[data-page=overview]")
    await page.screenshot(path=shots / "phone-overview.png", full_page=True)
    await phone.close()


def test_the_console_shows_the_live_system_and_answers_like_the_api(kafka, settings, tmp_path):
    from playwright.async_api import async_playwright

    settings = settings.derive(
        api_port=free_port(), index_kind="flat", api_keys=READER, admin_api_keys=ADMIN, publish_recommendations=True
    )
    store = ModelStore.in_data_dir(settings.data_dir)
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
            trainer = settings.derive(**SMALL_TRAINING, index_tune=True)  # the index chosen and measured
            await train_once(
                TrainerConfig.from_settings(trainer), kafka, force=True, choose_index=index_chooser(trainer)
            )
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
            await poison.send_and_wait(Topics.from_settings(settings.kafka).clicks, b"\xc1 not an event", key=b"u1")
            await poison.stop()
            for shown in ("#events-per-s", "#publishes-per-s", "#dead-letters"):
                await page.wait_for_function(
                    f"Number(document.querySelector('{shown}').textContent) > 0", timeout=60_000
                )
            await page.wait_for_function("!document.querySelector('#dead-table td.none')", timeout=30_000)
            await page.wait_for_function("document.querySelectorAll('#lag-table tr').length > 1", timeout=30_000)
            # The workers table: each worker found, the version its publisher serves, no publish errors.
            cells = "[...document.querySelectorAll('#workers-table tbody td')].map(c => c.textContent)"
            await page.wait_for_function(
                f"(cells => cells[0] === '{settings.worker.url}' && cells[3] === '{store.current()}' "
                f"&& cells[7] === '0')({cells})",
                timeout=30_000,
            )
            assert (await page.text_content("#publish-errors")) == "0" and (
                await page.text_content("#backlog")
            ).isdigit()
            # The servers table: this server's heartbeat on recs.serving, with the version it serves.
            await page.wait_for_function(
                "([server, version]) => { const cells = [...document.querySelectorAll('#servers-table tbody td')]"
                ".map(c => c.textContent); return cells[0] === server && cells[1] === version; }",
                arg=[f"{socket.gethostname()}:{settings.api_port}", store.current()],
                timeout=30_000,
            )
            await page.wait_for_timeout(6000)  # a few more points in the charts
            await page.screenshot(path=shots / "overview.png", full_page=True)

            # Playground: the page's answer is the API's.
            user = next(u for u in (f"u{n}" for n in range(SHOP.users)) if live.features.get(u) is not None)
            await page.click("nav button[data-page=playground]")
            await page.fill("#user-id", user)
            await page.click("#user-form button")
            shown = await _table(page, "#recommendations")
            answer = await _api(base, f"/recommendations/{user}?k=10&explain=true&details=true&diversity=0")
            assert [(_item_id(row[0]), row[3]) for row in shown] == [
                (item["item_id"], item["source"]) for item in answer["items"]
            ]  # the same items, each with the source that ranked it
            await page.wait_for_selector("#features dl")  # the admin key sees the user's features

            # Search: the item whose title is asked for comes back.
            wanted = random.Random(3).choice(items)
            await page.uncheck("#search-personal")
            await page.fill("#query", wanted.title)
            await page.click("#search-form button")
            await page.wait_for_selector("#search-results tbody tr")
            found = await page.text_content("#search-results tbody")
            assert wanted.item_id in found
            # An item's bought-together list, each with its source, as the API answers it.
            await page.click(f"#search-results tbody a:text('({wanted.item_id})')")
            together = await _table(page, "#together")
            answer = await _api(base, f"/items/{wanted.item_id}/bought-together?k=10")
            assert [(_item_id(row[0]), row[2]) for row in together] == [
                (item["item_id"], item["source"].replace("_", " ")) for item in answer["items"]
            ]
            await page.screenshot(path=shots / "playground.png", full_page=True)
            await _rules_hold_in_the_playground(page, base, user, shown, items, shots)
            await _experiments_count_live(page, base, kafka, settings, live, shots)

            # Models: a read key cannot roll back.
            current = store.current()
            await page.fill("#api-key", READER)
            await page.dispatch_event("#api-key", "change")
            await page.click("nav button[data-page=models]")
            await page.wait_for_selector("#versions tbody tr")
            await page.wait_for_function(f"document.querySelector('#worker-versions').textContent === '{live.version}'")
            index_cell = await page.text_content("#versions tbody tr:first-child td:nth-child(9)")
            assert re.search(r"recall@10 [01]\.\d{3}, p99 [\d.]+ ms, \d+ B/item", index_cell), index_cell
            await page.click("#rollback")
            await page.wait_for_function("document.querySelector('#rollback-result').textContent.includes('403')")
            assert store.current() == current
            await page.screenshot(path=shots / "models.png", full_page=True)
            await page.click("nav button[data-page=rules]")
            await page.click("#save-rule")
            await page.wait_for_function("document.querySelector('#rule-result').textContent.includes('403')")

            # Quality: the reports in DATA_DIR/reports.
            await page.click("nav button[data-page=quality]")
            await page.wait_for_selector("#reports img")
            await page.screenshot(path=shots / "quality.png", full_page=True)
            await _fits_a_phone(browser, only_the_server, base, shots)
            await browser.close()

    asyncio.run(scenario())
    assert blocked == []  # nothing but the server was asked for


async def _rules_hold_in_the_playground(page, base: str, user: str, shown: list[list[str]], items, shots: Path):
    """An admin writes a placement's rule in the editor (a bad one is refused
    with its reason); the playground's answer under that placement follows it."""
    banned = shown[0][1]  # the category of the user's first recommendation
    lifted = next(item.category for item in items if item.category != banned)
    promoted = next(item.item_id for item in items if item.category != banned)
    await page.click("nav button[data-page=rules]")
    await page.wait_for_selector("#rules-table td.none")
    await page.fill("#rule-placement", "home")
    await page.fill("#rule-min-price", "50")
    await page.fill("#rule-max-price", "10")
    await page.click("#save-rule")
    await page.wait_for_function("document.querySelector('#rule-result').textContent.includes('above max_price')")
    await page.fill("#rule-min-price", "")
    await page.fill("#rule-max-price", "")
    await page.fill("#rule-exclude", banned)
    await page.fill("#rule-promoted", promoted)
    await page.fill("#rule-slot", "2")
    await page.click("#add-boost")
    await page.fill("#boosts .boost-value", lifted)
    await page.click("#save-rule")
    await page.wait_for_function("document.querySelector('#rule-result').textContent.startsWith('saved')")
    listed = await _table(page, "#rules-table")
    assert listed == [["home", f"not {banned}", f"{lifted} +0.5", f"{promoted} from place 2"]]
    rule = (await _api(base, "/rules/home"))["rule"]
    assert (rule["exclude_categories"], rule["promoted"], rule["promoted_slot"]) == ([banned], [promoted], 1)
    assert [(b["category"], b["weight"]) for b in rule["boosts"]] == [(lifted, 0.5)]
    await page.screenshot(path=shots / "rules.png", full_page=True)

    await page.click("nav button[data-page=playground]")
    await page.fill("#placement", "home")
    await page.click("#user-form button")
    await page.wait_for_function(f"document.querySelector('#recommendations tbody').textContent.includes('{promoted}')")
    placed = await _table(page, "#recommendations")
    answer = await _api(base, f"/recommendations/{user}?k=10&explain=true&details=true&diversity=0&placement=home")
    assert [(_item_id(row[0]), row[1], row[3]) for row in placed] == [
        (item["item_id"], item["category"], item["source"]) for item in answer["items"]
    ]
    assert banned not in {row[1] for row in placed} and (_item_id(placed[1][0]), placed[1][3]) == (promoted, "promoted")
    await page.fill("#placement", "")


async def _experiments_count_live(page, base: str, kafka, settings, live, shots: Path):
    """An admin starts an experiment in the editor (shares that do not sum to
    1 are refused with the reason); the clicks and purchases sent back with
    the answers' ids appear per variant on the page, as the API counts them."""
    await page.click("nav button[data-page=experiments]")
    await page.fill("#experiment-placement", "home")
    await page.fill("#experiment-name", "spring")
    await page.fill("#variants .variant:nth-child(2) .variant-share", "0.6")
    await page.click("#save-experiment")
    await page.wait_for_function("document.querySelector('#experiment-result').textContent.includes('sum to 1')")
    await page.fill("#variants .variant:nth-child(2) .variant-share", "0.5")
    await page.fill("#variants .variant:nth-child(2) .variant-rule", "unruled")  # b: the model's answer
    await page.click("#save-experiment")
    await page.wait_for_function("document.querySelector('#experiment-result').textContent.startsWith('running')")

    clicks = {"a": 0, "b": 0}
    async with (
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": READER}) as http,
        ShopProducer(kafka, settings) as producer,
    ):
        for n in range(40):
            answer = (await http.get(f"/recommendations/u{n}?placement=home")).json()
            if n % 3:
                await producer.click(
                    f"u{n}", answer["items"][0]["item_id"], recommendation_id=answer["recommendation_id"]
                )
                clicks[answer["variant"]] += 1
    wanted = [[variant, str(n)] for variant, n in sorted(clicks.items())]
    await page.wait_for_function(
        "wanted => JSON.stringify([...document.querySelectorAll('.experiment tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[4].textContent])) === JSON.stringify(wanted)",
        arg=wanted,
        timeout=30_000,
    )
    shown = await _table(page, ".experiment table")
    results = {r["variant"]: r for r in (await _api(base, "/experiments/home"))["results"]}
    assert [[row[0], row[2], row[3]] for row in shown] == [
        ["a", "home", str(results["a"]["answers"])],
        ["b", "unruled", str(results["b"]["answers"])],
    ]
    assert await page.locator(".experiment svg circle").count() >= 2  # each variant's rate on its interval
    await page.screenshot(path=shots / "experiments.png", full_page=True)


async def _table(page, table: str) -> list[list[str]]:
    """A table's cells, once it has a row."""
    await page.wait_for_selector(f"{table} tbody tr")
    return await page.eval_on_selector_all(
        f"{table} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


async def _api(base: str, path: str) -> dict:
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": READER}) as http:
        return (await http.get(path)).json()


def _item_id(link: str) -> str:
    """The id in an item link's 'title (id)'."""
    return re.search(r"\(([^()]*)\)$", link).group(1)
