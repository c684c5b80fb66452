"""`streamrec bench scale` at a small size: two group sizes of real worker
processes, every figure present; its JSON contract, never a figure."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from streamrec.cli import app


def test_bench_scale_reports_each_group_size(kafka, settings, monkeypatch):
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(settings.data_dir))
    args = [
        "bench",
        "scale",
        "--workers",
        "1,2",
        "--users",
        "500",
        "--items",
        "200",
        "--rate",
        "100",
        "--seconds",
        "2",
        "--burst",
        "2000",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for figure in ("events_per_s", "publishes_per_s", "freshness_p50_ms", "freshness_p99_ms"):
        assert set(report[figure]) == {"1", "2"}, figure
    assert all(v > 0 for v in report["events_per_s"].values()) and report["events_per_s_ratio"]["1"] == 1.0
    assert all(v > 0 for v in report["publishes_per_s"].values())
