"""`streamrec tune` and `evaluate` end to end on a real broker: users from the
changelog, a table, a choice with the settings that select it, a plot; the
evaluation's summary beside its plot."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.foundation.schema import Item
from streamrec.foundation.store import ModelStore
from streamrec.shop.producer import ShopProducer
from tests.integration.helpers import RunningWorker, until
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"lamp {n}", f"c{n % 4}") for n in range(400)]


def test_tune_measures_with_real_users_and_prints_its_choice(kafka, settings, monkeypatch):
    version = publish_random_version(ModelStore.in_data_dir(settings.data_dir), ITEMS)

    async def users_in_the_changelog():
        worker = await RunningWorker(settings, kafka).start()
        async with ShopProducer(kafka, settings) as producer:
            await producer.send_catalog(ITEMS)
            for u in range(60):
                for n in range(3):
                    await producer.click(f"u{u}", f"i{(u * 7 + n) % len(ITEMS)}")
        await until(lambda: worker.worker.status.events >= 180, 30, "the clicks")
        await worker.stop()  # flushes the changelog

    asyncio.run(users_in_the_changelog())
    for name in ("topic_prefix", "app_id", "partitions", "data_dir"):
        monkeypatch.setenv(f"STREAMREC_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("STREAMREC_TUNE_QUERIES", "50")
    result = CliRunner().invoke(app, ["tune", "--recall", "0.99", "--prefer", "memory"])
    assert result.exit_code == 0, result.output
    assert "50 queries came from users" in result.output
    assert "STREAMREC_INDEX_KIND=" in result.stdout
    assert (settings.data_dir / "reports" / f"tune-{version.version}.png").exists()

    result = CliRunner().invoke(app, ["evaluate"])  # the same version on the same users' newest events
    assert result.exit_code == 0, result.output
    summary = json.loads((settings.data_dir / "reports" / f"evaluate-{version.version}.json").read_text())
    assert summary["version"] == version.version and 0 <= summary["recall@20 (model, popularity)"][0] <= 1
