"""A real Apache Kafka cluster on this machine, without Docker: KRaft nodes
(each a broker and a controller) from Kafka's own jars on the local JDK.

The jars come from Maven Central through the committed descriptor
`apache-kafka.pom.xml` (fetched once into a cache directory); each node gets
its own log directory, formatted with one cluster id, and listens on
loopback. `streamrec broker --apache-kafka --nodes 3 --port P` runs one until
Ctrl-C, restarting a node that dies while a majority serves (`supervise`);
the tests' `kafka` fixture starts one on the same code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streamrec.apache_kafka_security import ClusterSecurity
from streamrec.broker import BrokerError, die_with_parent, port_open

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("apache-kafka.pom.xml")
CHECK = "streamrec-cluster-check"  # the topic and group that show the cluster serves
HEAP = "-Xmx512m"  # three nodes and the tests share 24 GiB and two cores
LOG_TAIL_LINES = 8  # of a dead node's log, in the launcher's report


def default_jars_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars are kept between runs (like pip's cache); a changed descriptor fetches anew."""
    descriptor = hashlib.sha256(POM.read_bytes()).hexdigest()[:8]
    return Path.home() / ".cache" / "streamrec" / f"apache-kafka-{version}-{descriptor}"


def require_tools() -> None:
    """A clear error naming what is missing, before anything is fetched."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise BrokerError(
            f"Apache Kafka needs {' and '.join(missing)} on the PATH (a JDK 17+ and Maven: "
            "apt-get install openjdk-17-jdk-headless maven, or brew install openjdk@17 maven)"
        )


def fetch_jars(dest: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """Kafka's jars and their dependencies in `dest` (fetched by Maven once)."""
    require_tools()
    dest = dest or default_jars_dir(version)
    done = dest / ".complete"
    if done.exists():
        return dest
    log.info("fetching Apache Kafka %s's jars from Maven Central into %s ...", version, dest)
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise BrokerError(f"Maven could not fetch Apache Kafka {version}: {finished.stdout[-2000:]}{finished.stderr}")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    done.touch()
    return dest


def new_cluster_id() -> str:
    """A random id as Kafka writes them (URL-safe base64 of 16 bytes), never
    starting with '-': the storage tool would read one as an option (1 in 64)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


@dataclass(frozen=True)
class NodeExit:
    """A node that exited: its code (negative: the signal that ended it) and its log's last lines."""

    node: int
    code: int
    log_tail: str

    def describe(self) -> str:
        ended = f"was killed by {signal.Signals(-self.code).name}" if self.code < 0 else f"exited with code {self.code}"
        return f"node {self.node} {ended}"


class RestartBudget:
    """A node restarted `limit` times within `window_s` is crash-looping: it is left down."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._restarts: dict[int, deque[float]] = {}

    def allows(self, node: int) -> bool:
        now = self.clock()
        recent = self._restarts.setdefault(node, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True


class KafkaCluster:
    """`nodes` combined broker+controller nodes: clients on port, port+1, ...;
    the controllers' quorum on the ports after those. With `security`, clients
    and brokers authenticate (SASL/SCRAM over TLS) and ACLs are enforced."""

    def __init__(
        self,
        nodes: int = 3,
        port: int = 9092,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        jars: Path | None = None,
        broker_options: dict[str, str] | None = None,
        security: ClusterSecurity | None = None,
    ):
        self.nodes, self.port, self.host = nodes, port, host
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="streamrec-kafka-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.jars = jars
        self.broker_options = broker_options or {}
        self.security = security
        self.listener = "SASL_SSL" if security else "PLAINTEXT"
        self.cluster_id = new_cluster_id()
        self._processes: dict[int, subprocess.Popen] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{self.port + n}" for n in range(self.nodes))

    def log_file(self, node: int) -> Path:
        return self.workdir / f"node-{node}" / "server.log"

    def start(self, timeout_s: float = 120.0) -> KafkaCluster:
        busy = [
            p for n in range(self.nodes) for p in (self.port + n, self._controller_port(n)) if port_open(self.host, p)
        ]
        if busy:
            raise BrokerError(f"ports {busy} are already in use; stop those processes or choose another --port")
        self.jars = fetch_jars(self.jars)
        for node in range(self.nodes):
            self._format(node)
        try:
            for node in range(self.nodes):
                self.start_node(node)
            self.wait_until_serving(timeout_s)
        except BaseException:
            self.stop()  # nodes that did start would outlive a failed start
            raise
        log.info("Apache Kafka %s: %d nodes serving on %s", KAFKA_VERSION, self.nodes, self.bootstrap)
        return self

    def start_node(self, node: int) -> None:
        """Start one node on its formatted log directory."""
        out = self.log_file(node).open("ab")
        self._processes[node] = subprocess.Popen(
            self._java("kafka.Kafka", str(self._config(node))),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        out.close()

    def exits(self) -> list[NodeExit]:
        """The nodes that exited since the last look, with their code and the end
        of their log; they count as down until `start_node` brings them back."""
        gone = [node for node, process in self._processes.items() if process.poll() is not None]
        return [NodeExit(node, self._processes.pop(node).returncode, self._log_tail(node)) for node in gone]

    def alive(self) -> int:
        return sum(process.poll() is None for process in self._processes.values())

    def has_quorum(self) -> bool:
        """Every node is a controller: the cluster serves while a majority of them lives."""
        return self.alive() > self.nodes // 2

    def wait_until_serving(self, timeout_s: float = 120.0) -> None:
        """Every running node listens, is in the cluster's metadata, and a
        consumer group can commit (so the first real group does not wait)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node, process in self._processes.items():
                if process.poll() is not None:
                    raise BrokerError(
                        f"Kafka node {node} exited with code {process.returncode}: see {self.log_file(node)}"
                    )
            listening = all(port_open(self.host, self.port + n) for n in self._processes)
            if listening and asyncio.run(self._serves(len(self._processes))):
                return
            time.sleep(0.5)
        raise BrokerError(f"Apache Kafka did not serve within {timeout_s:.0f} s: see the logs under {self.workdir}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node (a controlled shutdown), SIGKILL what outlives `timeout_s`."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self._processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()

    def grant(self, *acl: str) -> None:
        """Add ACLs as Kafka's own tool does (`kafka-acls.sh --add` with `acl`), as the admin user."""
        command = self._java(
            "org.apache.kafka.tools.AclCommand", "--bootstrap-server", self.bootstrap, "--add", "--force", *acl
        )
        if self.security:
            admin = self.security.java_client_properties(self.workdir / "admin.properties")
            command += ["--command-config", str(admin)]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise BrokerError(f"granting {' '.join(acl)} failed: {finished.stdout[-2000:]}{finished.stderr[-2000:]}")

    def client_options(self) -> dict[str, object]:
        """What an aiokafka client takes to reach the cluster (as its admin user, when secured)."""
        return {"bootstrap_servers": self.bootstrap, **(self.security.client_options() if self.security else {})}

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration ------------------------------------------------------------

    def _controller_port(self, node: int) -> int:
        return self.port + self.nodes + node

    def _config(self, node: int) -> Path:
        path = self.workdir / f"node-{node}" / "server.properties"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n}@{self.host}:{self._controller_port(n)}" for n in range(self.nodes))
        replicas = min(3, self.nodes)
        clients = f"{self.listener}://{self.host}:{self.port + node}"
        options = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": f"{clients},CONTROLLER://{self.host}:{self._controller_port(node)}",
            "advertised.listeners": clients,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": self.listener,
            "listener.security.protocol.map": f"{self.listener}:{self.listener},CONTROLLER:PLAINTEXT",
            "log.dirs": str(path.parent / "data"),
            "offsets.topic.replication.factor": str(replicas),
            # Few partitions for the coordinators' topics: 50 (the default) each, three times
            # over, kept two cores busy for a minute after the first group joined.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.num.partitions": "4",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(max(1, replicas - 1)),
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            **(self.security.broker_options() if self.security else {}),
            **self.broker_options,
        }
        path.write_text("".join(f"{key}={value}\n" for key, value in options.items()))
        return path

    def _format(self, node: int) -> None:
        finished = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                self.cluster_id,
                "--config",
                str(self._config(node)),
                "--ignore-formatted",
                *(self.security.format_arguments() if self.security else []),
            ),
            capture_output=True,
            text=True,
        )
        if finished.returncode != 0:
            raise BrokerError(f"formatting Kafka node {node}'s storage failed: {finished.stdout}{finished.stderr}")

    def _log_tail(self, node: int) -> str:
        with contextlib.suppress(OSError), self.log_file(node).open("rb") as log_lines:
            last = deque(log_lines, maxlen=LOG_TAIL_LINES)
            return b"".join(last).decode(errors="replace").rstrip()
        return ""

    def _java(self, main_class: str, *arguments: str) -> list[str]:
        """The command line that runs one of Kafka's classes on the fetched jars."""
        return [
            "java",
            HEAP,
            "-cp",
            f"{self.jars}/*",
            f"-Dlog4j2.configurationFile={self._log4j()}",
            main_class,
            *arguments,
        ]

    def _log4j(self) -> Path:
        path = self.workdir / "log4j2.properties"
        if not path.exists():
            path.write_text(
                "status = warn\nappender.out.type = Console\nappender.out.name = OUT\n"
                "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
                "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
                "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
                "logger.state.name = state.change.logger\nlogger.state.level = WARN\n"
            )
        return path

    async def _serves(self, nodes: int) -> bool:
        admin = AIOKafkaAdminClient(**self.client_options(), request_timeout_ms=5000)
        consumer = AIOKafkaConsumer(
            **self.client_options(), group_id=CHECK, enable_auto_commit=False, request_timeout_ms=5000
        )
        try:
            await admin.start()
            if len((await admin.describe_cluster())["brokers"]) < nodes:
                return False
            if CHECK not in await admin.list_topics():
                await admin.create_topics([NewTopic(CHECK, 1, min(3, nodes))])
            await consumer.start()
            consumer.assign([TopicPartition(CHECK, 0)])
            await asyncio.wait_for(consumer.commit({TopicPartition(CHECK, 0): 0}), 10)
            return True
        except (TimeoutError, KafkaError, OSError):
            return False
        finally:
            await consumer.stop()
            await admin.close()


def supervise(
    cluster: KafkaCluster,
    stop: threading.Event,
    say: Callable[[str], None],
    restart: bool = True,
    budget: RestartBudget | None = None,
    poll_s: float = 0.5,
) -> str | None:
    """Keep `cluster` serving until `stop` is set: each node that dies is reported
    (its code and log) and, with `restart`, started again on its own data.
    Returns why the cluster can no longer serve (a majority is down), or None on `stop`."""
    budget = budget or RestartBudget()
    while not stop.wait(poll_s):
        for gone in cluster.exits():
            say(f"{gone.describe()}; the last lines of {cluster.log_file(gone.node)}:\n{gone.log_tail}")
            if restart and budget.allows(gone.node):
                cluster.start_node(gone.node)
                say(f"node {gone.node} restarted on its own data")
            elif restart:
                say(f"node {gone.node} died {budget.limit} times within {budget.window_s:.0f} s: left down")
        if not cluster.has_quorum():
            return (
                f"{cluster.alive()} of {cluster.nodes} nodes alive: the controllers' quorum needs "
                f"{cluster.nodes // 2 + 1}, the cluster cannot serve"
            )
    return None


if __name__ == "__main__":  # `make kafka-jars`
    print(fetch_jars())
