"""The deployment files: every streamrec setting they set exists, so a typo
cannot silently leave, say, authentication off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.foundation.settings import Settings

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


COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"  # compose-spec/compose-spec, Apache-2.0
BROKERS = ["kafka-1", "kafka-2", "kafka-3"]
STREAMREC_SERVICES = ["worker", "trainer", "api", "traffic"]


def _compose(*names: str) -> dict:
    """The compose files as `docker compose -f ... -f ...` merges them (mappings merge, the rest replaces)."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {key: merge(base.get(key), value) if key in base else value for key, value in over.items()} | {
                key: value for key, value in base.items() if key not in over
            }
        return over

    merged: dict = {}
    for name in names:
        merged = merge(merged, yaml.safe_load((DEPLOY / name).read_text()))
    return merged


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.sasl.yml"])
def test_the_compose_files_validate_offline_against_the_compose_specification(name):
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    validator.validate(yaml.safe_load((DEPLOY / name).read_text()))  # raises on any error
    validator.validate(_compose("docker-compose.yml", name))


def test_compose_runs_the_whole_product_on_a_three_broker_cluster():
    compose = _compose("docker-compose.yml")
    services = compose["services"]
    assert set(services) == {*BROKERS, *STREAMREC_SERVICES} and services["traffic"]["profiles"] == ["traffic"]
    brokers = [services[name]["environment"] for name in BROKERS]
    assert sorted(b["KAFKA_NODE_ID"] for b in brokers) == [1, 2, 3]
    voters = {f"{b['KAFKA_NODE_ID']}@{name}:9093" for b, name in zip(brokers, BROKERS, strict=True)}
    assert all(set(b["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters for b in brokers)
    published = {name: services[name]["ports"][0].split(":")[0] for name in BROKERS}
    assert all(
        b["KAFKA_MIN_INSYNC_REPLICAS"] == 2 and b["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3 for b in brokers
    )
    for b, name in zip(brokers, BROKERS, strict=True):  # each broker tells outside clients the port published for it
        assert b["KAFKA_ADVERTISED_LISTENERS"] == f"INTERNAL://{name}:29092,EXTERNAL://localhost:{published[name]}"
    for name in STREAMREC_SERVICES:
        env = services[name]["environment"]
        assert env["STREAMREC_KAFKA_BOOTSTRAP"] == ",".join(f"{b}:29092" for b in BROKERS)
        assert int(env["STREAMREC_REPLICATION_FACTOR"]) == 3 and int(env["STREAMREC_MIN_INSYNC_REPLICAS"]) == 2
        assert all(
            b["KAFKA_MIN_INSYNC_REPLICAS"] == 2 and b["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3 for b in brokers
        )
        result = CliRunner().invoke(app, [*services[name]["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)  # a command and options streamrec has
    data = services["trainer"]["environment"]["STREAMREC_DATA_DIR"]
    assert services["trainer"]["volumes"] == services["api"]["volumes"] == [f"models:{data}"]  # the versions, shared


def test_the_authenticated_variant_logs_every_client_in():
    sasl = _compose("docker-compose.yml", "docker-compose.sasl.yml")["services"]
    for name in STREAMREC_SERVICES:
        assert sasl[name]["environment"]["STREAMREC_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert sasl[name]["environment"]["STREAMREC_KAFKA_BOOTSTRAP"]  # the plain file's settings kept
    for name in BROKERS:
        protocols = dict(
            pair.split(":") for pair in sasl[name]["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        assert protocols["INTERNAL"].startswith("SASL_") and protocols["EXTERNAL"].startswith("SASL_")
        assert "--command-config" in sasl[name]["healthcheck"]["test"][1]


K8S = DEPLOY / "k8s"
STRIMZI_REQUIRED = {
    "Kafka": {"kafka", "entityOperator"},
    "KafkaNodePool": {"replicas", "roles", "storage"},
    "KafkaTopic": {"topicName", "partitions", "replicas"},
    "KafkaUser": {"authentication", "authorization"},
}


def _manifests() -> list[dict]:
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(resources) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return [doc for name in resources for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def test_the_kubernetes_manifests_validate_offline_against_the_api_schemas():
    import kubernetes_validate

    for doc in _manifests():
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):  # Strimzi's CRDs: not in the bundled schemas
            assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2" and doc["metadata"]["name"]
            assert STRIMZI_REQUIRED[doc["kind"]] <= set(doc["spec"]), doc["kind"]
        else:
            kubernetes_validate.validate(doc, "1.30", strict=True)  # raises on any error


def test_the_deployment_shape_follows_the_product():
    docs = _manifests()
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    settings = by_kind["ConfigMap"][0]["data"]
    assert {name.removeprefix("STREAMREC_").lower() for name in settings} <= set(Settings.model_fields)
    partitions = int(settings["STREAMREC_PARTITIONS"])
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in by_kind["KafkaTopic"]}
    co_partitioned = [
        "shop.clicks",
        "shop.purchases",
        "recs.control",
        "streamrec-user-features-changelog",
        "streamrec-item-stats-changelog",
    ]
    assert {topics[name] for name in co_partitioned} == {partitions}
    worker = by_kind["StatefulSet"][0]
    assert worker["spec"]["replicas"] <= partitions and worker["spec"]["serviceName"] == "streamrec-worker"
    for workload in [*by_kind["StatefulSet"], *by_kind["Deployment"]]:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert "secretKeyRef" in env["STREAMREC_KAFKA_SASL_PASSWORD"]["valueFrom"]  # secrets from Secrets
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
            if container["name"] != "trainer":
                assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert by_kind["HorizontalPodAutoscaler"][0]["spec"]["scaleTargetRef"]["name"] == "streamrec-api"
