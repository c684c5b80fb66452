"""The console's endpoints: the page, its keys, rollback, reports and answers before any model."""

from __future__ import annotations

import asyncio

import httpx

from streamrec.foundation.codec import encode
from streamrec.foundation.features import ItemStats, UserFeatures
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.index.kinds import IndexSpec
from streamrec.serving.api import create_api
from streamrec.serving.console import add_console
from streamrec.serving.live import LiveConfig, LiveModel
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"item {n}", f"c{n % 3}") for n in range(30)]
KEYS = {"X-API-Key": "reader-key", "X-Streamrec-Console": "1"}, {"X-API-Key": "admin-key", "X-Streamrec-Console": "1"}


def _console(settings: Settings, live: LiveModel) -> httpx.AsyncClient:
    store = ModelStore.in_data_dir(settings.data_dir)

    async def rollback() -> str:
        return store.rollback()

    api = create_api(live)
    add_console(api, live, None, rollback)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api")


def test_a_read_key_sees_the_models_and_only_an_admin_key_rolls_back(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat", api_keys="reader-key", admin_api_keys="admin-key")
    store = ModelStore.in_data_dir(settings.data_dir)
    first, second = (publish_random_version(store, ITEMS).version for _ in range(2))
    measured = {"k": 10, "recall": 0.97, "p99_ms": 0.4, "bytes_per_item": 96.0, "queries": 500}
    store.record_index(first, {**IndexSpec("hnsw", hnsw_m=16).to_dict(), "measured": measured})
    live = LiveModel(LiveConfig.from_settings(settings))
    reader, admin = KEYS

    async def calls() -> dict:
        async with _console(settings, live) as http:
            return {
                "page": await http.get("/console"),
                "script": await http.get("/console/assets/console.js"),
                "elsewhere": await http.get("/console/assets/..%2Fconsole.py"),
                "models without a key": await http.get("/console/api/models"),
                "models": await http.get("/console/api/models", headers=reader),
                "read rollback": await http.post("/console/api/rollback", headers=reader),
                "elsewhere's rollback": await http.post("/console/api/rollback", headers={"X-API-Key": "admin-key"}),
                "rollback": await http.post("/console/api/rollback", headers=admin),
                "again": await http.post("/console/api/rollback", headers=admin),
            }

    found = asyncio.run(calls())
    assert found["page"].status_code == 200 and "/console/assets/console.js" in found["page"].text
    assert found["script"].headers["content-type"].startswith("text/javascript")
    assert found["elsewhere"].status_code == 404 and found["models without a key"].status_code == 401
    models = found["models"].json()
    assert models["current"] == second and [v["version"] for v in models["versions"]] == [second, first]
    assert {"recall@20", "gate", "index", "window"} <= set(models["versions"][0])
    assert models["versions"][0]["index"] is None  # as configured: not tuned by the trainer
    assert models["versions"][1]["index"] == {
        "label": IndexSpec("hnsw", hnsw_m=16).label(),
        "measured": {k: measured[k] for k in list(measured)[:4]},
    }
    assert found["read rollback"].status_code == 403
    assert found["elsewhere's rollback"].status_code == 403  # without the console's header
    assert found["rollback"].json() == {"current": first} and store.current() == first
    assert found["again"].status_code == 409  # nothing earlier to go back to


def test_reports_are_listed_and_served_by_name_only(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "demo.json").write_text('{"median_p99_ms": 80.0, "samples": [' + ",".join(["1"] * 50) + "]}")
    (reports / "demo.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.png").write_bytes(b"not a report")

    async def calls() -> list[httpx.Response]:
        async with _console(settings, LiveModel(LiveConfig.from_settings(settings))) as http:
            paths = ("/console/api/reports", "/console/api/reports/demo.png", "/console/api/reports/..%2Fsecret.png")
            return [await http.get(path) for path in paths]

    listing, image, outside = asyncio.run(calls())
    assert listing.json() == {"images": ["demo.png"], "summaries": {"demo.json": {"median_p99_ms": 80.0}}}
    assert image.content == b"\x89PNG fake" and outside.status_code == 404


def test_before_any_model_recommendations_come_from_live_popularity_and_say_so(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat")
    live = LiveModel(LiveConfig.from_settings(settings))
    live.catalog.items.update({item.item_id: item for item in ITEMS})
    for n, item in enumerate(ITEMS[:5]):
        stats = ItemStats(
            item.item_id, clicks=n + 1, last_ts=100.0, bucket_starts=[0], bucket_clicks=[n + 1], bucket_purchases=[0]
        )
        live.item_stats.rows[(0, item.item_id)] = stats
    live.features.apply(b"u1", encode(UserFeatures("u1", purchased=["i4"], last_ts=100.0).to_wire()))

    async def calls() -> dict:
        async with _console(settings, live) as http:
            return (await http.get("/recommendations/u1?k=3&details=true")).json()

    answer = asyncio.run(calls())
    assert answer["model_version"] == "live-popularity"
    assert [item["item_id"] for item in answer["items"]] == ["i3", "i2", "i1"]  # i4, the most popular, was bought
    assert answer["items"][0]["title"] == "item 3"
