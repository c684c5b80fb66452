"""Faults on a real three-node Apache Kafka cluster, the way Jepsen-style
tests attack brokers. While shop events stream at a steady rate:

- kill -9 the broker that leads the user-features changelog's first
  partition (and with it a third of the event partitions), then restart it;
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
import signal
import time
from collections import Counter

import httpx
import pytest

from streamrec.apache_kafka import KafkaCluster
from streamrec.broker import free_ports, port_open
from streamrec.foundation.kafka import KafkaConnection, admin_client
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.processes import child_env
from tests.conftest import _brokers, free_port
from tests.integration.helpers import RunningWorker, end_process, run_scenario, until
from tests.integration.test_soak import _worker_process, held, produce

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
    topics = Topics.from_settings(settings)
    admin = admin_client(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics([topics.user_features_changelog, topics.clicks, topics.purchases])
    finally:
        await admin.close()
    leaders = {(d["topic"], p["partition"]): p["leader"] for d in described for p in d["partitions"]}
    leader = leaders[(topics.user_features_changelog, 0)]
    return leader, sorted(f"{topic}[{partition}]" for (topic, partition), node in leaders.items() if node == leader)


def test_a_broker_killed_under_load_loses_and_doubles_nothing(cluster, settings):
    kafka = KafkaConnection(cluster.bootstrap)
    settings = settings.derive(commit_interval_s=0.2)
    progress: list[tuple[float, int]] = []  # (time, events folded)

    async def scenario() -> None:
        await ensure_topics(settings, kafka)
        worker = await RunningWorker(settings, kafka).start()
        status = worker.worker.status
        sending = asyncio.create_task(produce(kafka, settings, EVENTS, USERS, RATE))

        async def sample() -> None:
            while True:
                progress.append((time.monotonic(), status.events))
                await asyncio.sleep(0.1)

        sampling = asyncio.create_task(sample())
        await asyncio.sleep(BEFORE_S)
        node, led = await _leader_of_first_changelog_partition(kafka, settings)
        killed_at = time.monotonic()
        cluster.kill(node)
        await asyncio.sleep(DOWN_S)
        cluster.start_node(node)
        restarted_at = time.monotonic()
        sent = await sending
        sent_until = time.monotonic()
        total = sum(sent.values())
        await until(lambda: status.events >= total, 120, f"all {total:,} events folded after the fault")
        await asyncio.sleep(1.0)  # anything beyond would be a double count
        sampling.cancel()
        assert status.events == total and held(worker.worker) == sent  # exact, per user
        await worker.stop()
        stall, during = _figures(progress, killed_at, restarted_at, sent_until)
        print(
            f"\nkilled node {node} (leading {', '.join(led)}): the worker stalled {stall:.1f} s at most; "
            f"{during:.0f} events/s while the node was down ({RATE:.0f} sent/s); all {total:,} events exact"
        )
        assert stall < 30.0

    run_scenario(scenario)


def _figures(
    progress: list[tuple[float, int]], killed_at: float, restarted_at: float, sent_until: float
) -> tuple[float, float]:
    """The longest time, from the kill to the last event sent, without a folded
    event; and the events/s folded while the node was down."""
    after = [(t, n) for t, n in progress if killed_at <= t <= sent_until]
    stall, last_change = 0.0, after[0][0]
    for (_, before), (t, n) in zip(after, after[1:], strict=False):
        if n > before:
            stall, last_change = max(stall, t - last_change), t
    stall = max(stall, after[-1][0] - last_change)
    down = [(t, n) for t, n in after if t <= restarted_at]
    return stall, (down[-1][1] - down[0][1]) / max(1e-9, down[-1][0] - down[0][0])


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
        await ensure_topics(settings, kafka)
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
