"""The API's access control: every endpoint but /healthz needs a key once keys are set."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import numpy as np
import torch

from streamrec.embeddings.model import TwoTower
from streamrec.embeddings.neighbours import Neighbours
from streamrec.embeddings.versions import load_version, publish_model
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import Manifest, ModelStore
from streamrec.serving.api import create_api
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.serving.serving_index import ServingIndex
from tests.versions import SMALL, publish_random_version

ITEMS = [Item(f"i{n}", f"item {n}", f"c{n % 3}") for n in range(30)]


def test_with_keys_set_only_healthz_answers_without_one(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat", api_keys="reader-key")
    live = LiveModel(LiveConfig.from_settings(settings))
    version = publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS)
    live.current = ServingIndex(version, live.settings.spec, ITEMS, live.settings.serving)

    async def calls() -> dict[str, tuple[int, int, str]]:
        transport = httpx.ASGITransport(app=create_api(live))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            found = {}
            for path in ("/recommendations/u1", "/items/i1/similar", "/search?q=item", "/metrics", "/healthz"):
                without = await http.get(path)
                keyed = await http.get(path, headers={"X-API-Key": "reader-key"})
                found[path] = (without.status_code, keyed.status_code, without.text)
            found["schema"] = (0, 0, (await http.get("/openapi.json")).text)
            return found

    found = asyncio.run(calls())
    for path in ("/recommendations/u1", "/items/i1/similar", "/search?q=item", "/metrics"):
        assert found[path][:2] == (401, 200) and "X-API-Key" in found[path][2], path
    assert found["/healthz"][:2] == (200, 200)
    assert "APIKeyHeader" in found["schema"][2]  # the OpenAPI schema tells clients how to authenticate


def test_details_add_each_items_title_and_category_and_the_default_wire_stays_compact(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat")
    live = LiveModel(LiveConfig.from_settings(settings))
    version = publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS)
    live.current = ServingIndex(version, live.settings.spec, ITEMS, live.settings.serving)
    live.catalog.items.update({item.item_id: item for item in ITEMS})

    async def calls() -> list[dict]:
        transport = httpx.ASGITransport(app=create_api(live))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            paths = ("/recommendations/u1?k=5", "/items/i1/similar?k=5", "/search?q=item+7&k=5")
            plain = [(await http.get(path)).json() for path in paths]
            detailed = [(await http.get(path + "&details=true")).json() for path in paths]
            return plain + detailed

    answers = asyncio.run(calls())
    for plain in answers[:3]:
        assert all(set(item) == {"item_id", "score"} for item in plain["items"])
    by_id = {item.item_id: item for item in ITEMS}
    for detailed in answers[3:]:
        assert detailed["items"]
        for item in detailed["items"]:
            assert (item["title"], item["category"]) == (by_id[item["item_id"]].title, by_id[item["item_id"]].category)


def test_bought_together_answers_the_baskets_pairs_in_stock_first_then_similar_items(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat")
    live = LiveModel(LiveConfig.from_settings(settings))
    store = ModelStore.in_data_dir(settings.data_dir)
    torch.manual_seed(0)
    rows = np.full((len(ITEMS), 3), -1, dtype=np.int32)
    weights = np.zeros((len(ITEMS), 3), dtype=np.float32)
    rows[1], weights[1] = [5, 7, 9], [0.9, 0.8, 0.5]  # i1 goes with i5, i7 and i9, most often with i5
    together = Neighbours(rows, weights)
    name = publish_model(store, TwoTower(SMALL).eval(), ITEMS, None, Manifest(created=0.0), bought_together=together)
    catalog = [replace(item, in_stock=item.item_id != "i7") for item in ITEMS]
    live.current = ServingIndex(load_version(store, name), live.settings.spec, catalog, live.settings.serving)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_api(live))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            paths = ("/items/i1/bought-together?k=6", "/items/i2/bought-together?k=4", "/items/nope/bought-together")
            return [await http.get(path) for path in paths]

    paired, unpaired, unknown = asyncio.run(calls())
    answer = paired.json()["items"]
    assert [(i["item_id"], i["source"]) for i in answer[:2]] == [("i5", "bought_together"), ("i9", "bought_together")]
    assert {i["source"] for i in answer[2:]} == {"similar"} and len(answer) == 6
    ids = [i["item_id"] for i in answer]
    assert len(set(ids)) == 6 and "i1" not in ids and "i7" not in ids  # never itself, never out of stock
    assert {i["source"] for i in unpaired.json()["items"]} == {"similar"} and len(unpaired.json()["items"]) == 4
    assert unknown.status_code == 404
