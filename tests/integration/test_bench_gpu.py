"""`streamrec bench gpu` end to end at a small size: without a GPU the CPU
side alone, every part reported (the H200 run is the same command). It
asserts the shape of the report, never a speed."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from streamrec.cli import app


def test_the_check_reports_the_trainer_the_indexes_and_the_publisher(tmp_path):
    out = tmp_path / "bench-gpu.json"
    args = [
        "bench",
        "gpu",
        "--events",
        "4000",
        "--epochs",
        "1",
        "--sizes",
        "3000",
        "--queries",
        "200",
        "--batches",
        "50,500",
        "--publisher-items",
        "3000",
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    trainer = report["trainer"]
    assert set(trainer) == ({"cpu", "cuda", "cuda_to_cpu_examples_per_s"} if torch.cuda.is_available() else {"cpu"})
    assert trainer["cpu"]["examples_per_s"] > 0 and 0 <= trainer["cpu"]["valid_recall@20"] <= 1
    kinds = {row["kind"] for row in report["index"]}
    assert {"flat", "ivf_flat", "ivf_pq"} <= kinds
    flat = next(row for row in report["index"] if row["kind"] == "flat")
    assert flat["recall_at_10"] == 1.0 and flat["items"] == 3000  # exact against exact
    assert [(row["device"], row["users"]) for row in report["publisher"]][:2] == [("cpu", 50), ("cpu", 500)]
    assert all(row["users_per_s"] > 0 for row in report["publisher"])
    assert report["machine"]["cagra"] is False or report["machine"]["faiss_gpus"] > 0
