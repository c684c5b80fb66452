"""Fixtures shared by all tests: a real Kafka broker for the integration tests.

The broker is, in order of preference: the cluster in STREAMREC_KAFKA_BOOTSTRAP;
Apache Kafka in a testcontainer when a Docker engine answers; the embedded
tansu broker on a free port. Each test gets its own topic prefix, so tests
never see each other's records.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from foundation.kafka import KafkaConnection
from foundation.settings import Settings
from streamrec.broker import EmbeddedBroker, free_port

__all__ = ["free_port"]  # the tests' import of it


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # no client library, no socket, no daemon: all mean "no Docker"
        return False


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaConnection]:
    """A connection to a real broker for the whole session (plain)."""
    if os.environ.get("STREAMREC_KAFKA_BOOTSTRAP"):
        yield KafkaConnection(os.environ["STREAMREC_KAFKA_BOOTSTRAP"])
    elif _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield KafkaConnection(container.get_bootstrap_server())
    else:
        with EmbeddedBroker("127.0.0.1", free_port()) as broker:
            yield KafkaConnection(broker.bootstrap)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a broker is marked so (`-m broker`, `-m "not broker"`), without a line to forget."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


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
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A Faust app left running by a failed test keeps a non-daemon consumer
    thread whose own loop never ends: the process would then never exit (CI
    would wait out its whole budget). End it with the session's status."""
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if lingering:
        print(f"\nthreads left running ({', '.join(t.name for t in lingering)}): exiting with status {exitstatus}")
        sys.stdout.flush()
        os._exit(int(exitstatus))
