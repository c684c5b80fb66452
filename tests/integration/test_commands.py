"""The long-running commands as an operator runs them: they stop cleanly within
seconds on SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C), and a user error
is one line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streamrec.broker import port_open
from tests.conftest import free_port


def streamrec(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_port(process: subprocess.Popen, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"nothing listened on {port}"
        time.sleep(0.1)


def stops_cleanly(process: subprocess.Popen, sig: signal.Signals, within_s: float = 15) -> None:
    process.send_signal(sig)
    try:
        code = process.wait(within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running {within_s:.0f} s after {sig.name}") from None
    _, err = process.communicate()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_broker_stops_on_a_signal(sig):
    port = free_port()
    broker = streamrec("broker", "--port", str(port))
    wait_for_port(broker, port)
    stops_cleanly(broker, sig, within_s=10)
    assert not port_open("127.0.0.1", port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_and_the_server_stop_on_a_signal(kafka, tmp_path, sig):
    env = {
        "STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "STREAMREC_DATA_DIR": str(tmp_path),
        "STREAMREC_TOPIC_PREFIX": "sig.",
    }
    worker_port, api_port = free_port(), free_port()
    worker = streamrec("worker", "--port", str(worker_port), env=env)
    server = streamrec("serve", "--port", str(api_port), env=env)
    wait_for_port(worker, worker_port)
    wait_for_port(server, api_port)
    stops_cleanly(worker, sig)
    stops_cleanly(server, sig)


def test_user_errors_are_one_line_and_exit_code_2(tmp_path):
    port = free_port()
    broker = streamrec("broker", "--port", str(port))
    wait_for_port(broker, port)
    try:
        cases = [
            (["broker", "--port", str(port)], {}, "already in use"),
            (["worker", "--port", str(free_port())], {"STREAMREC_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "nothing listens"),
            (["serve", "--port", str(port)], {"STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, "in use"),
            (
                ["worker", "--port", str(free_port())],  # tansu has no transactions
                {
                    "STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                    "STREAMREC_PROCESSING_GUARANTEE": "exactly_once",
                    "STREAMREC_DATA_DIR": str(tmp_path),
                },
                "needs a broker with transactions",
            ),
            (["evaluate", "--version", "../../etc"], {"STREAMREC_DATA_DIR": str(tmp_path)}, "not a model version"),
            (["forget", "u1"], {"STREAMREC_APP_ID": "shop+1"}, "STREAMREC_APP_ID='shop+1'"),  # not a Kafka name
        ]
        for args, env, telling in cases:
            process = streamrec(*args, env=env)
            _, err = process.communicate(timeout=120)
            assert process.returncode == 2 and telling in err and "Traceback" not in err, (args, err)
    finally:
        stops_cleanly(broker, signal.SIGTERM)
