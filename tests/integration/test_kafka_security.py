"""streamrec on an Apache Kafka cluster that enforces security as a shop's does:
SASL/SCRAM-SHA-512 over TLS (certificates made here, users created at format
time) and ACLs. The product's commands connect with the STREAMREC_KAFKA_*
settings alone; a shop's producer that may only write the shop topics feeds
the worker and can read neither the changelogs nor the recommendations; a
wrong password or an untrusted certificate is one line and exit code 2."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from streamrec.apache_kafka import KafkaCluster
from streamrec.apache_kafka_security import ADMIN, ClusterSecurity, make_authority
from streamrec.broker import free_ports
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Event
from streamrec.foundation.topics import Topics
from streamrec.processes import child_env
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from tests.conftest import _brokers, free_port
from tests.integration.helpers import until
from tests.integration.test_commands import stops_cleanly, streamrec, wait_for_port

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif("apache-kafka" not in _brokers(), reason="the Apache Kafka cluster is not among the brokers"),
]

USERS = {ADMIN: "admin-secret", "streamrec": "streamrec-secret", "shop": "shop-secret"}
SMALL_MODEL = {
    f"STREAMREC_{name}": value
    for name, value in {
        "MODEL_DIM": "16",
        "MODEL_HIDDEN": "32",
        "MODEL_ID_BUCKETS": "4096",
        "MODEL_TEXT_BUCKETS": "4096",
        "MODEL_MAX_RECENT": "10",
        "TRAIN_EPOCHS": "2",
        "TRAIN_BATCH_SIZE": "128",
        "TRAIN_RANDOM_NEGATIVES": "64",
        "INDEX_KIND": "flat",
    }.items()
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> KafkaCluster:
    """Three nodes, SASL_SSL between clients and brokers and among brokers, ACLs enforced."""
    directory = tmp_path_factory.mktemp("secured-kafka")
    security = ClusterSecurity.create(directory / "tls", "127.0.0.1", USERS)
    with KafkaCluster(3, free_ports(6), workdir=directory, security=security) as cluster:
        yield cluster


def _grant(cluster: KafkaCluster, settings) -> None:
    """streamrec's user: everything under its topic prefix (topics and groups) and
    the cluster's description; the shop's: write and describe its three topics."""
    prefix = settings.topic_prefix
    cluster.grant(
        "--allow-principal",
        "User:streamrec",
        "--operation",
        "All",
        "--resource-pattern-type",
        "prefixed",
        "--topic",
        prefix,
        "--group",
        prefix,
    )
    cluster.grant("--allow-principal", "User:streamrec", "--operation", "Describe", "--cluster")
    topics = Topics.from_settings(settings.kafka)
    shop_topics = [a for t in (topics.clicks, topics.purchases, topics.catalog) for a in ("--topic", t)]
    cluster.grant("--allow-principal", "User:shop", "--operation", "Write", "--operation", "Describe", *shop_topics)


def _environment(cluster: KafkaCluster, settings, user: str) -> dict[str, str]:
    return {
        **child_env(settings, KafkaConnection(cluster.bootstrap)),
        **cluster.security.settings_environment(user),
        **SMALL_MODEL,
    }


def _run(env: dict[str, str], *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamrec.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


async def _shop_sends(cluster: KafkaCluster, settings) -> Counter:
    """The shop's own principal sends a catalog and a stream of events; each user's count."""
    shop = Shop(ShopConfig(users=120, items=100, categories=5, seed=11, new_item_every=0))
    records = [*shop.catalog(), *shop.stream(3000)]
    kafka = KafkaConnection(cluster.bootstrap, cluster.security.client_options("shop"))
    sent: Counter = Counter()
    async with ShopProducer(kafka, settings) as producer:
        for record in records:
            if isinstance(record, Event):
                await producer.send_event(record)
                sent[record.user_id] += 1
            else:
                await producer.send_item(record)
    return sent


async def _features_match(settings, sent: Counter) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.worker_port}", timeout=5) as http:

        async def counted() -> Counter:
            counts = Counter()
            for user_id in sent:
                answer = await http.get(f"/users/{user_id}")
                if answer.status_code == 200:
                    counts[user_id] = answer.json()["clicks"] + answer.json()["purchases"]
            return counts

        for _ in range(120):
            if await counted() == sent:
                return
            await asyncio.sleep(0.5)
        assert await counted() == sent


async def _records_read(cluster: KafkaCluster, user: str, topic: str) -> int:
    """How many records of the topic's first partition `user` reads within 5 s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, **cluster.security.client_options(user), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await consumer.getmany(timeout_ms=5000)
        return sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()


async def _shop_is_refused(cluster: KafkaCluster, settings) -> None:
    """The shop's principal reads nothing of a changelog or the recommendations
    (which streamrec's user reads), and may not write a changelog."""
    topics = Topics.from_settings(settings.kafka)
    for topic in (topics.user_features_changelog, topics.recommendations):
        assert await _records_read(cluster, "streamrec", topic) > 0, topic
        assert await _records_read(cluster, "shop", topic) == 0, topic
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, **cluster.security.client_options("shop"))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.user_features_changelog, b"forged", key=b"u1")
    finally:
        await producer.stop()


def test_the_product_runs_on_a_cluster_with_sasl_tls_and_acls(secured, settings):
    """Worker, trainer, server and forget as streamrec's user; events from the shop's user."""
    settings = settings.derive(worker_port=free_port())
    _grant(secured, settings)
    env = _environment(secured, settings, "streamrec")
    worker = streamrec("worker", "--port", str(settings.worker_port), env=env)
    try:
        wait_for_port(worker, settings.worker_port)
        sent = asyncio.run(_shop_sends(secured, settings))
        asyncio.run(_features_match(settings, sent))

        trained = _run(env, "train")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        api_port = free_port()
        server = streamrec("serve", "--port", str(api_port), env=env)
        try:
            wait_for_port(server, api_port)
            user = next(iter(sent))
            answer = httpx.get(f"http://127.0.0.1:{api_port}/recommendations/{user}", timeout=30)
            assert answer.status_code == 200 and answer.json()["items"], answer.text
            assert answer.json()["model_version"] != "live-popularity"
        finally:
            stops_cleanly(server, signal.SIGTERM)

        forgotten = _run(env, "forget", user)
        assert forgotten.returncode == 0, forgotten.stderr
        del sent[user]
        asyncio.run(
            until(
                lambda: httpx.get(f"http://127.0.0.1:{settings.worker_port}/users/{user}").status_code == 404,
                60,
                "the forgotten user gone",
            )
        )
        asyncio.run(_shop_is_refused(secured, settings))
    finally:
        stops_cleanly(worker, signal.SIGTERM)


def test_a_wrong_password_or_an_untrusted_certificate_is_one_line_and_exit_code_2(secured, settings, tmp_path):
    env = _environment(secured, settings, "streamrec")
    stranger = make_authority(tmp_path, "stranger")
    cases = [
        ({"STREAMREC_KAFKA_SASL_PASSWORD": "not-the-password"}, "STREAMREC_KAFKA_SASL_PASSWORD"),
        ({"STREAMREC_KAFKA_SSL_CAFILE": str(stranger)}, "not signed by STREAMREC_KAFKA_SSL_CAFILE"),
        ({"STREAMREC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "STREAMREC_KAFKA_SECURITY_PROTOCOL"),
    ]
    commands = [("forget", "u1"), ("worker", "--port", str(free_port())), ("train",), ("bench", "freshness")]
    runs = [(change, telling, command) for change, telling in cases for command in commands[:1]]
    runs += [(*cases[0], command) for command in commands[1:]]  # every command's connection: the password
    for change, telling, command in runs:
        finished = _run({**env, **change}, *command, timeout_s=60)
        lines = [line for line in finished.stderr.splitlines() if line.strip()]
        assert finished.returncode == 2 and telling in lines[-1], (change, command, finished.stderr)
        assert [line for line in lines if "error" in line.lower()] == lines[-1:], finished.stderr
