"""The embedded broker never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")

STARTER = """
import sys, time
from streamrec.broker import EmbeddedBroker
broker = EmbeddedBroker(port=int(sys.argv[1])).start()
print(broker.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"  # a zombie is gone for our purpose


def test_a_killed_parent_takes_its_broker_with_it():
    parent = subprocess.Popen([sys.executable, "-c", STARTER, str(free_port())], stdout=subprocess.PIPE, text=True)
    broker_pid = int(parent.stdout.readline())
    assert _alive(broker_pid)
    parent.send_signal(signal.SIGKILL)  # no cleanup code runs
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(broker_pid):
        assert time.monotonic() < deadline, "the broker outlived its parent"
        time.sleep(0.1)


def test_a_kafka_cluster_id_never_reads_as_an_option():
    from streamrec.apache_kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # about 31 would start with '-' by chance
    assert not any(i.startswith("-") for i in ids) and len(set(ids)) == 2000 and {len(i) for i in ids} == {22}
