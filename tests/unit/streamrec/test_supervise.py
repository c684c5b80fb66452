"""The Apache Kafka launcher's supervision: what it does when a node dies."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from streamrec.apache_kafka import NodeExit, RestartBudget, supervise


class Cluster:
    """A cluster's surface as `supervise` sees it; `die(node, code)` ends a node."""

    def __init__(self, nodes: int = 3):
        self.nodes = nodes
        self.up = set(range(nodes))
        self.gone: list[NodeExit] = []
        self.started: list[int] = []

    def die(self, node: int, code: int) -> None:
        self.up.discard(node)
        self.gone.append(NodeExit(node, code, f"node {node}'s last words"))

    def exits(self) -> list[NodeExit]:
        gone, self.gone = self.gone, []
        return gone

    def start_node(self, node: int) -> None:
        self.up.add(node)
        self.started.append(node)

    def alive(self) -> int:
        return len(self.up)

    def has_quorum(self) -> bool:
        return self.alive() > self.nodes // 2

    def log_file(self, node: int) -> Path:
        return Path(f"node-{node}/server.log")


class StopAfter(threading.Event):
    """A stop that is set after `looks` waits: the supervision's rounds, without sleeping."""

    def __init__(self, looks: int):
        super().__init__()
        self.looks = looks

    def wait(self, timeout: float | None = None) -> bool:
        self.looks -= 1
        return self.looks < 0


def _supervise_rounds(cluster: Cluster, rounds: int, **options) -> tuple[str | None, list[str]]:
    """`supervise` for `rounds` looks, then stopped: its answer and what it said."""
    said: list[str] = []
    return supervise(cluster, StopAfter(rounds), said.append, poll_s=0, **options), said


def test_a_killed_node_is_reported_with_its_log_and_restarted():
    cluster = Cluster()
    cluster.die(1, -signal.SIGKILL)
    reason, said = _supervise_rounds(cluster, 2)
    assert reason is None and cluster.started == [1] and cluster.alive() == 3
    assert "node 1 was killed by SIGKILL" in said[0] and "node 1's last words" in said[0]
    assert said[1] == "node 1 restarted on its own data"


def test_without_restart_a_dead_node_stays_down_while_a_majority_serves():
    cluster = Cluster()
    cluster.die(0, 1)
    reason, said = _supervise_rounds(cluster, 3, restart=False)
    assert reason is None and cluster.started == [] and "node 0 exited with code 1" in said[0]


def test_the_launcher_ends_when_a_majority_is_down():
    cluster = Cluster()
    cluster.die(0, -signal.SIGKILL)
    cluster.die(2, -signal.SIGKILL)
    reason, _ = _supervise_rounds(cluster, 5, restart=False)
    assert reason == "1 of 3 nodes alive: the controllers' quorum needs 2, the cluster cannot serve"


def test_a_crash_looping_node_is_left_down_after_its_budget():
    now = [0.0]
    budget = RestartBudget(limit=3, window_s=60, clock=lambda: now[0])
    assert [budget.allows(1) for _ in range(4)] == [True, True, True, False]
    assert budget.allows(2), "each node has a budget of its own"
    now[0] = 61.0
    assert budget.allows(1), "restarts older than the window are forgotten"
