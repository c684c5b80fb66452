"""Fixtures shared by all tests: real Kafka brokers for the integration tests.

Every test that takes the `kafka` fixture runs on the embedded tansu broker
and, for the suites in APACHE_KAFKA_SUITES, again on a three-node Apache
Kafka cluster started on the local JDK (one of each for the whole session);
a cluster in STREAMREC_KAFKA_BOOTSTRAP replaces both. Each test gets its own
topic prefix, so tests never see each other's records.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from streamrec.broker import EmbeddedBroker, free_port, free_ports
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings

__all__ = ["free_port"]  # the tests' import of it


BROKERS = ("tansu", "apache-kafka")
# The suites that also run on the three-node Apache Kafka cluster: those where the brokers differ
# (restores and commits, idempotence and transactions, ListOffsets, librdkafka clients, replication,
# compaction: docs/operations.md). The others test streamrec above the client and run on tansu alone;
# the Apache Kafka cluster with SASL, TLS and ACLs (test_kafka_security) runs the whole product, the
# answering process and its publishes included.
APACHE_KAFKA_SUITES = {
    "test_worker",
    "test_outside_clients",
    "test_soak",
    "test_kafka",
    "test_apache_kafka",
    "test_shop_clients",
}
APACHE_KAFKA_ONLY = {"test_shop_clients", "test_apache_kafka"}  # what tansu cannot do (compaction, idempotent KafkaJS)


def _brokers() -> tuple[str, ...]:
    """STREAMREC_TEST_BROKERS narrows the brokers (tansu, apache-kafka); a
    cluster of yours in STREAMREC_KAFKA_BOOTSTRAP replaces them."""
    if os.environ.get("STREAMREC_KAFKA_BOOTSTRAP"):
        return ("configured",)
    wanted = os.environ.get("STREAMREC_TEST_BROKERS", ",".join(BROKERS))
    return tuple(name.strip() for name in wanted.split(",") if name.strip() in BROKERS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every broker test runs on each broker of `_brokers()` its suite is for."""
    if "kafka" not in metafunc.fixturenames:
        return
    suite = metafunc.module.__name__.rsplit(".", 1)[-1]
    brokers = [b for b in _brokers() if b != "apache-kafka" or suite in APACHE_KAFKA_SUITES]
    if suite in APACHE_KAFKA_ONLY:
        brokers = [b for b in brokers if b != "tansu"]
    metafunc.parametrize("kafka", brokers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaConnection]:
    """A connection to a real broker for the whole session (plain): the embedded
    tansu, a three-node Apache Kafka cluster (KRaft, on the JDK), or yours."""
    if request.param == "configured":
        yield KafkaConnection(os.environ["STREAMREC_KAFKA_BOOTSTRAP"])
    elif request.param == "apache-kafka":
        from streamrec.apache_kafka import KafkaCluster

        # The cleaner looks for work every second (15 s by default): the compaction test waits less.
        cluster = KafkaCluster(
            3,
            free_ports(6),
            workdir=tmp_path_factory.mktemp("apache-kafka"),
            broker_options={"log.cleaner.backoff.ms": "1000"},
        )
        with cluster:
            yield KafkaConnection(cluster.bootstrap)
    else:
        with EmbeddedBroker("127.0.0.1", free_port()) as broker:
            yield KafkaConnection(broker.bootstrap)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a broker is marked so (`-m broker`, `-m "not broker"`), without a line to forget;
    under pytest-xdist (`--dist loadgroup`) the tests of the Apache Kafka cluster go to one worker, which
    alone starts it (each worker has its own session: three JVMs a worker would crowd two cores)."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("kafka") == "apache-kafka":
            item.add_marker(pytest.mark.xdist_group("apache-kafka"))


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings isolated to this test: own topics, group, ports and data dir."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        topic_prefix=f"t{tag}.",
        app_id=f"app{tag}",
        partitions=4,
        worker_port=free_port(),
        commit_interval_s=0.2,
        data_dir=tmp_path / "data",
        publisher_processes=0,  # a worker that starts in seconds; the suites of answering processes say so
    )


@pytest.hookimpl(trylast=True)  # after pytest-xdist's worker has reported its results
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A Faust app left running by a failed test keeps a non-daemon consumer
    thread whose own loop never ends: the process would then never exit (CI
    would wait out its whole budget). End it with the session's status."""
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if lingering:
        print(f"\nthreads left running ({', '.join(t.name for t in lingering)}): exiting with status {exitstatus}")
        sys.stdout.flush()
        os._exit(int(exitstatus))
