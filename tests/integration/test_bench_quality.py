"""`streamrec bench quality` end to end on a small simulated log written as
CSV files: the product through a broker, a worker, the trainer and the API,
beside every peer. It asserts the shape of what is reported, never a figure."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.foundation.schema import Event
from streamrec.shop.simulate import Shop, ShopConfig
from tests.conftest import free_port

SYSTEMS = {"streamrec", "popularity", "als", "bpr", "item-knn", "bm25", "ease"}


def _write_log(directory, events: int = 3000) -> tuple:
    shop = Shop(ShopConfig(users=150, items=300, categories=6, seed=4, new_item_every=0))
    ratings, items = directory / "log.csv", directory / "items.csv"
    with ratings.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "kind", "when"])
        for record in shop.stream(events):
            if isinstance(record, Event):
                writer.writerow([record.user_id, record.item_id, record.type, int(record.ts)])
    with items.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "genres"])
        for item in shop.catalog():
            writer.writerow([item.item_id, item.title, f"{item.category}|extra"])
    return ratings, items


def _small_settings(monkeypatch, kafka, settings) -> None:
    """The command's settings: this test's broker and data, one epoch, free ports, two partitions."""
    for name, value in {
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "DATA_DIR": str(settings.data_dir),
        "TRAIN_EPOCHS": "1",
        "API_PORT": str(free_port()),
        "WORKER_PORT": str(free_port()),
        "PARTITIONS": "2",
    }.items():
        monkeypatch.setenv(f"STREAMREC_{name}", value)


def test_the_pipeline_reports_every_system_with_every_measure(kafka, settings, tmp_path, monkeypatch):
    ratings, items = _write_log(tmp_path)
    _small_settings(monkeypatch, kafka, settings)
    args = [
        "bench",
        "quality",
        str(ratings),
        "--items",
        str(items),
        "--items-category-col",
        "genres",
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--type-col",
        "kind",
        "--time-col",
        "when",
        "--out",
        str(tmp_path / "figures"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["systems"]) == SYSTEMS and report["product"] == "streamrec"
    for name, measures in report["systems"].items():
        for measure in ("recall@10", "recall@20", "recall@50", "ndcg@20", "coverage@20", "diversity@20"):
            assert 0.0 <= measures[measure] <= 1.0, (name, measure)
        assert measures["users"] == report["systems"]["streamrec"]["users"] > 50
    assert report["best_peer"] in SYSTEMS - {"streamrec"} and report["ratio_to_best_peer"] is not None
    assert len(report["product_recall@20_per_seed"]) == 1 and report["manifest_test_recall@20_per_seed"][0] is not None
    assert set(report["train_s"]) == SYSTEMS and report["train_s"]["streamrec"][0] > 0
    assert report["product_neighbours_per_seed"][0]["source"] in ("cosine", "rp3beta", "ease")
    assert set(report["buy_again"]) == {"streamrec buy-again", "recency", "frequency"}
    assert all(0.0 <= again["recall@20"] <= 1.0 for again in report["buy_again"].values())
    reports = settings.data_dir / "reports"  # the console's Quality page shows them
    assert (
        json.loads((reports / "bench-quality.json").read_text()) == report and (reports / "bench-quality.png").exists()
    )
    spread = report["product_over_seeds"]["recall@20"]
    assert spread["min"] <= spread["mean"] <= spread["max"]
    assert (tmp_path / "figures" / "bench-quality.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "figures" / "bench-quality.json").read_text())["systems"] == report["systems"]


def test_a_log_without_the_named_columns_is_one_line_and_exit_code_2(tmp_path):
    ratings = tmp_path / "log.csv"
    ratings.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["bench", "quality", str(ratings), "--no-peers"])
    assert result.exit_code == 2 and "user_id" in result.output


def _write_sessions(directory, events: int = 3000):
    """The simulated shop as anonymous sessions a minute apart: each user's events of each 5 hours are one session."""
    shop = Shop(ShopConfig(users=150, items=300, categories=6, seed=4, new_item_every=0))
    log = directory / "sessions.csv"
    with log.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "kind", "when"])
        clicks = (record for record in shop.stream(events) if isinstance(record, Event))
        for n, record in enumerate(clicks):
            writer.writerow([f"{record.user_id}-{n // 300}", record.item_id, record.type, n * 60])
    return log


@pytest.mark.parametrize("sessions", [False, True], ids=["users", "sessions"])
def test_the_streaming_evaluation_scores_every_system_on_the_same_next_events(
    kafka, settings, tmp_path, monkeypatch, sessions
):
    ratings, items = _write_log(tmp_path)
    log = _write_sessions(tmp_path) if sessions else ratings
    _small_settings(monkeypatch, kafka, settings)
    columns = ["--user-col", "user", "--item-col", "item", "--type-col", "kind", "--time-col", "when"]
    columns += ["--items-category-col", "genres", "--users", "40", "--per-user", "3"]
    args = ["bench", "streaming", str(log), "--items", str(items), *columns, *(["--sessions"] if sessions else [])]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["systems"]) == {
        "streamrec (real time)",
        "streamrec (batch)",
        "V-SkNN",
        "STAN",
        "item-kNN (newest item)",
        "popularity",
    }
    for scores in report["systems"].values():
        assert 0.0 <= scores["mrr@20"] <= scores["hr@20"] <= 1.0
    assert report["users"] == 40 and 40 <= report["events"] <= 120 and report["late_rounds"] == 0
    assert report["train_s"] > 0 and report["real_time_over_batch_hr@20"] >= 0
    assert report["real_time_over_V-SkNN_hr@20"] >= 0 and report["real_time_over_STAN_hr@20"] >= 0
