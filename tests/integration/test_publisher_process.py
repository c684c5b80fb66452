"""The publisher's answering processes (`STREAMREC_PUBLISHER_PROCESSES`) under
hard faults: one killed, it ends its worker with the reason; their worker
killed, they go too (no orphan answering with stale features)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.foundation.store import ModelStore
from streamrec.processes import WorkerProcess, child_env
from streamrec.shop.producer import ShopProducer
from streamrec.shop.simulate import Shop, ShopConfig
from tests.conftest import free_port
from tests.integration.helpers import until
from tests.versions import publish_random_version

SHOP = ShopConfig(users=50, items=100, categories=4, seed=2, new_item_every=0)


def _answering(worker_pid: int) -> list[int]:
    """The worker's answering process: its live child started by multiprocessing's spawn."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            spawned = b"spawn_main" in (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == worker_pid and fields[0] != "Z" and spawned:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_one_killed_answering_process_ends_its_worker_with_the_reason(kafka, settings):
    settings = settings.derive(publisher_processes=2, index_kind="flat")
    items = Shop(SHOP).catalog()
    publish_random_version(ModelStore.in_data_dir(settings.data_dir), items, seed=1)

    async def scenario() -> None:
        async with ShopProducer(kafka, settings) as producer:
            await producer.send_catalog(items)
        process, stop = WorkerProcess(settings, kafka), asyncio.Event()
        running = asyncio.create_task(process.run(stop))
        try:
            await until(lambda: process.publishing or running.done(), 60, "the answering process's index")
            answering = _answering(os.getpid())
            assert len(answering) == 2, answering
            os.kill(answering[0], signal.SIGKILL)
            with pytest.raises(RuntimeError, match="the publisher process ended"):
                await asyncio.wait_for(running, 30)
            assert not any(_alive(pid) for pid in answering), "the other answering process outlived its worker"
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)

    asyncio.run(scenario())


def test_a_killed_worker_takes_its_answering_processes_with_it(kafka, settings):
    env = {**child_env(settings, kafka), "STREAMREC_WORKER_PORT": str(free_port())}
    env["STREAMREC_PUBLISHER_PROCESSES"] = "2"
    worker = subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while len(answering := _answering(worker.pid)) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, "the worker started no answering processes"
            time.sleep(0.2)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in answering):
            assert time.monotonic() < deadline, "an answering process outlived its worker by 30 s"
            time.sleep(0.2)
    finally:
        if worker.poll() is None:
            worker.kill()
