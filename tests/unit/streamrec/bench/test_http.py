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


def test_with_a_rule_both_halves_are_timed_and_a_bad_rule_is_refused(monkeypatch):
    monkeypatch.setenv("STREAMREC_API_PORT", str(free_port()))
    rule = '{"exclude_categories": ["c0"], "boosts": [{"category": "c1", "weight": 0.5}], "promoted": ["i7"]}'
    command = ["bench", "http", "--items", "3000", "--users", "50", "--requests", "200", "--json"]
    result = CliRunner().invoke(app, [*command, "--rule", rule])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < report["rule_p50_ms"] <= report["rule_p99_ms"] and report["rule_p99_ratio"] > 0
    assert report["rule"]["exclude_categories"] == ["c0"]
    refused = CliRunner().invoke(app, [*command, "--rule", '{"max_price": -1}'])
    assert refused.exit_code == 2 and "greater than or equal to 0" in refused.output
