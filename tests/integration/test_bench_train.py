"""`streamrec bench train` at a small size: a base version, then a warm and a
full refresh of the same trainer state; its JSON contract, never a figure."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from streamrec.cli import app


def test_bench_train_compares_a_warm_and_a_full_refresh(kafka, settings, monkeypatch):
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(settings.data_dir))
    for name, value in {
        "MODEL_DIM": 16,
        "MODEL_HIDDEN": 32,
        "TRAIN_RANDOM_NEGATIVES": 64,
        "TRAIN_BATCH_SIZE": 128,
    }.items():
        monkeypatch.setenv(f"STREAMREC_{name}", str(value))
    args = [
        "bench",
        "train",
        "--events",
        "4000",
        "--new-events",
        "500",
        "--users",
        "150",
        "--items",
        "100",
        "--epochs",
        "2",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["full"]["kind"] == "full" and report["warm"]["kind"] == "warm"
    assert report["warm"]["train_examples"] < report["full"]["train_examples"]
    for figure in ("full_refresh_s", "warm_refresh_s", "full_recall_at_20", "warm_recall_at_20", "examples_per_s"):
        assert report[figure] > 0, figure
