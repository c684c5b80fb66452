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
    co_partitioned = ["shop.clicks", "shop.purchases", "recs.control", "streamrec-user-features-changelog",
                      "streamrec-item-stats-changelog"]  # fmt: skip
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
