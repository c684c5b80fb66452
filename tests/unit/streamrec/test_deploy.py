"""The deployment files: every streamrec setting they set exists, so a typo
cannot silently leave, say, authentication off."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from foundation.settings import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _streamrec_variables(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {k for k in node if isinstance(k, str) and k.startswith("STREAMREC_")}
        return found.union(*(_streamrec_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_streamrec_variables(v) for v in node))
    return set()


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.sasl.yml"])
def test_every_streamrec_variable_in_a_compose_file_is_a_setting(name):
    variables = _streamrec_variables(yaml.safe_load((DEPLOY / name).read_text()))
    assert variables, name
    unknown = {v for v in variables if v.removeprefix("STREAMREC_").lower() not in Settings.model_fields}
    assert not unknown, unknown


def test_the_authenticated_variant_logs_every_worker_in():
    sasl = yaml.safe_load((DEPLOY / "docker-compose.sasl.yml").read_text())
    worker = sasl["services"]["worker"]["environment"]
    assert worker["STREAMREC_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    protocols = dict(
        pair.split(":")
        for pair in sasl["services"]["kafka"]["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert protocols["INTERNAL"].startswith("SASL_") and protocols["EXTERNAL"].startswith("SASL_")
