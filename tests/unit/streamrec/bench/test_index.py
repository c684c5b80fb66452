"""The index benchmark's contract, on a small size."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from streamrec.cli import app


def test_bench_index_ends_with_its_json_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["bench", "index", "--items", "2000", "--queries", "50", "--dim", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = {row["kind"] for row in report["configs"]}
    assert {"flat", "ivf_flat", "ivf_pq", "opq_ivf_pq", "hnsw", "sq8", "fp16"} <= kinds
    for row in report["configs"]:
        assert {"kind", "params", "items", "recall_at_10", "p50_ms", "p99_ms", "bytes_per_item", "build_s"} <= set(row)
        assert row["items"] == 2000 and 0 <= row["recall_at_10"] <= 1
    assert np.isclose(next(r for r in report["configs"] if r["kind"] == "flat")["recall_at_10"], 1.0)
    assert (tmp_path / "reports" / "bench-index-2000.png").exists()
