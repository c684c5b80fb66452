"""The HTTP benchmark's contract, on a small index."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from streamrec.cli import app
from tests.conftest import free_port


def test_bench_http_answers_every_request_and_ends_with_json(monkeypatch):
    monkeypatch.setenv("STREAMREC_API_PORT", str(free_port()))
    result = CliRunner().invoke(
        app, ["bench", "http", "--items", "3000", "--users", "50", "--requests", "200", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["items"] == 3000 and 0 < report["p50_ms"] <= report["p99_ms"]
