"""Faults on a real three-node Apache Kafka cluster, the way Jepsen-style
tests attack brokers. While shop events stream at a steady rate:

- kill -9, from outside, the node of `streamrec broker --apache-kafka` that
  leads the user-features changelog's first partition (and with it a third
  of the event partitions): the launcher restarts it;
- cut a worker process off (SIGSTOP: no heartbeat, no fetch, no write, as
  behind a network partition) long enough for the group to give its
  partitions away, then heal it (SIGCONT) while it still holds their state.

Every event must be counted exactly, per user, by the live workers and by a
fresh worker restored from the changelog afterwards (a healed worker writing
stale rows would show there); the group must recover by itself. The tests
print how long things stalled and how fast they went during the fault
(`pytest -s tests/integration/test_broker_faults.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from streamrec.apache_kafka import KafkaCluster
from streamrec.broker import free_ports, port_open
from streamrec.foundation.codec import encode
from streamrec.foundation.kafka import KafkaConnection, admin_client
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.processes import child_env
from tests.conftest import _brokers, free_port
from tests.integration.helpers import end_process, run_scenario, until
from tests.integration.test_soak import _worker_process, produce

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif("apache-kafka" not in _brokers(), reason="the Apache Kafka cluster is not among the brokers"),
]
RATE, BEFORE_S, DOWN_S, AFTER_S, USERS = 400.0, 6.0, 10.0, 6.0, 200
EVENTS = int(RATE * (BEFORE_S + DOWN_S + AFTER_S))  # at RATE, through the fault and after it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster of these tests' own: it is the one attacked (each test leaves it whole)."""
    with KafkaCluster(3, free_ports(6), workdir=tmp_path_factory.mktemp("attacked-kafka")) as running:
        yield running


async def _leader_of_first_changelog_partition(kafka: KafkaConnection, settings) -> tuple[int, list[str]]:
    """The node leading the changelog's partition 0, and every partition of streamrec's topics it leads."""
    topics = Topics.from_settings(settings.kafka)
    admin = admin_client(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics([topics.user_features_changelog, topics.clicks, topics.purchases])
    finally:
        await admin.close()
    leaders = {(d["topic"], p["partition"]): p["leader"] for d in described for p in d["partitions"]}
    leader = leaders[(topics.user_features_changelog, 0)]
    return leader, sorted(f"{topic}[{partition}]" for (topic, partition), node in leaders.items() if node == leader)


def test_the_launcher_serves_on_through_a_leader_killed_by_the_os_and_loses_and_doubles_nothing(settings, tmp_path):
    """`streamrec broker --apache-kafka --nodes 3` while a librdkafka producer
    (acks=all) sends: the node leading the changelog's first partition is
    killed with SIGKILL from outside; the launcher reports it and restarts it,
    and the worker answers every user exactly over HTTP."""
    first_port, data = free_ports(6), tmp_path / "cluster"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamrec.cli",
            "broker",
            "--apache-kafka",
            "--nodes",
            "3",
            "--port",
            str(first_port),
            "--data",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = _lines_of(launcher)
    kafka = KafkaConnection(",".join(f"127.0.0.1:{first_port + n}" for n in range(3)))
    workers: list[subprocess.Popen] = []
    try:
        _wait_for_line(said, "nodes on", launcher, 240)
        env = {
            **child_env(settings, kafka),
            "STREAMREC_WORKER_PORT": str(settings.worker_port),
            "STREAMREC_PUBLISH_RECOMMENDATIONS": "false",
        }

        worker_log = tmp_path / "worker.log"

        async def scenario() -> None:
            await ensure_topics(settings.kafka, kafka)
            with worker_log.open("wb") as log_file:
                command = [sys.executable, "-m", "streamrec.cli", "worker"]
                workers.append(subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT))
            await until(
                lambda: port_open("127.0.0.1", settings.worker_port) or workers[0].poll() is not None,
                180,
                "the worker's port",
            )
            assert workers[0].poll() is None, f"the worker exited: {worker_log.read_text()[-3000:]}"
            sending = asyncio.create_task(asyncio.to_thread(_produce_with_librdkafka, kafka, settings))
            await asyncio.sleep(BEFORE_S)
            node, led = await _leader_of_first_changelog_partition(kafka, settings)
            os.kill(_node_pid(data, node), signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.to_thread(_wait_for_line, said, f"node {node} restarted", launcher, 30)
            assert any(f"node {node} was killed by SIGKILL" in line for line in said), said
            restarted_s = time.monotonic() - killed_at
            sent = await sending
            exact_s = await _until_exact([settings.worker_port], sent, "the worker after the leader's kill")
            assert launcher.poll() is None, "the launcher stopped with the cluster still able to serve"
            print(
                f"\nkilled node {node} (leading {', '.join(led)}) with SIGKILL: the launcher restarted it "
                f"{restarted_s:.1f} s later; all {sum(sent.values()):,} events exact {exact_s:.1f} s after the last"
            )

        run_scenario(scenario)
    finally:
        for worker in workers:
            end_process(worker)
        end_process(launcher, 60)
    assert launcher.returncode == 0, said


def _lines_of(process: subprocess.Popen) -> list[str]:
    """What `process` writes to its standard error, line by line, as it comes."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True).start()
    return lines


def _wait_for_line(lines: list[str], text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in lines):
        assert process.poll() is None, f"the launcher exited with {process.returncode}: {lines}"
        assert time.monotonic() < deadline, f"no line with {text!r} within {timeout_s:.0f} s: {lines}"
        time.sleep(0.1)


def _node_pid(data: Path, node: int) -> int:
    """The process id of the JVM running `node` of the cluster in `data`, found as `ps` finds it."""
    config = str(data / f"node-{node}" / "server.properties")
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and config in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return int(proc.name)
    raise AssertionError(f"no process runs {config}")


def _produce_with_librdkafka(kafka: KafkaConnection, settings) -> Counter:
    """EVENTS clicks of USERS users at RATE from librdkafka (acks=all, idempotent,
    Java's murmur2 partitioner), as a shop's Go or .NET backend sends them."""
    topic = Topics.from_settings(settings.kafka).clicks
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
        }
    )
    sent: Counter = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for n in range(EVENTS):
        user = f"u{n % USERS}"
        event = {"event_id": f"v{n}", "type": "click", "user_id": user, "item_id": f"i{n % 997}", "ts": 1e9 + n}
        producer.produce(
            topic,
            value=encode(event),
            key=user.encode(),
            on_delivery=lambda error, _: error is None or failures.append(str(error)),
        )
        sent[user] += 1
        producer.poll(0)
        time.sleep(max(0.0, started + n / RATE - time.monotonic()))
    assert producer.flush(120) == 0 and not failures, failures
    return sent


async def _counts(port: int, users) -> Counter:
    """Each user's events as the worker on `port` answers (forwarding to the owner where it is not)."""
    found: Counter = Counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        for user in users:
            answer = await http.get(f"/users/{user}")
            if answer.status_code == 200:
                found[user] = answer.json()["clicks"] + answer.json()["purchases"]
    return found


async def _until_exact(ports: list[int], sent: Counter, what: str, timeout_s: float = 120.0) -> float:
    """Seconds until every worker on `ports` answers exactly `sent`; fails after `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if all(port_open("127.0.0.1", p) for p in ports) and all([await _counts(p, sent) == sent for p in ports]):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    for port in ports:
        found = await _counts(port, sent)
        wrong = {user: (found[user], count) for user, count in sent.items() if found[user] != count}
        some = dict(list(wrong.items())[:5])
        assert not wrong, f"{what} on port {port}: (answered, sent) of {len(wrong)} users, some: {some}"
    return time.monotonic() - started


@pytest.mark.slow  # `make soak` (about 2 minutes a run): see the note below
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_cut_off_and_healed_loses_and_doubles_nothing(cluster, settings, guarantee):
    """At least once, this passed 5 runs of 6 here; the one failure, with the
    machine loaded by a benchmark, is the hole left there: a worker stopped in
    the middle of a flush sends the rows already handed to its producer when it
    resumes, after the new owner's, and the changelog keeps them. Exactly once,
    that flush is a transaction, aborted when it outlived the group's session
    (or by the broker's transaction timeout); the stall watchdog closes every
    other way."""
    kafka = KafkaConnection(cluster.bootstrap)
    env = {
        **child_env(settings, kafka),
        "STREAMREC_COMMIT_INTERVAL_S": "0.2",
        "STREAMREC_PUBLISH_RECOMMENDATIONS": "false",
        "STREAMREC_PROCESSING_GUARANTEE": guarantee,
    }
    ports = [free_port() for _ in range(3)]

    def start(port: int):
        return _worker_process({**env, "STREAMREC_WORKER_PORT": str(port)})

    async def scenario() -> None:
        await ensure_topics(settings.kafka, kafka)
        workers = [start(ports[0]), start(ports[1])]
        try:
            sending = asyncio.create_task(produce(kafka, settings, EVENTS, USERS, RATE))
            await asyncio.sleep(BEFORE_S)
            workers[0].send_signal(signal.SIGSTOP)  # cut off: the session (6 s) expires, its partitions move
            await asyncio.sleep(DOWN_S)
            workers[0].send_signal(signal.SIGCONT)  # healed, with the state of partitions it no longer owns
            sent = await sending
            converged = await _until_exact(ports[:2], sent, "the live workers")
            for worker in workers:  # a clean stop, then a fresh worker reads only what the changelog holds
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
            workers.append(start(ports[2]))
            restored = await _until_exact(ports[2:], sent, "a fresh worker restored from the changelog")
            print(
                f"\nworker cut off for {DOWN_S:.0f} s and healed: both answer all {sum(sent.values()):,} "
                f"events exactly {converged:.1f} s after the last was sent; a fresh worker restored them exactly "
                f"in {restored:.1f} s"
            )
        finally:
            for worker in workers:
                end_process(worker)

    run_scenario(scenario)
