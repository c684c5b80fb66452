"""Shop producers in other languages, from examples/, against the real
Apache Kafka cluster: each user's features exact, nothing re-routed (every
client's default partitioner is Kafka's murmur2)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics, ensure_topics
from tests.integration.helpers import RunningWorker, run_scenario, until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EVENTS, USERS = 300, 20


def _command(language: str, bootstrap: str, topic: str) -> tuple[list[str], Path]:
    args = [bootstrap, topic, str(EVENTS), str(USERS)]
    if language == "java":
        classpath = (EXAMPLES / "java" / "cp.txt").read_text().strip()
        return ["java", "-cp", classpath, "ShopEvents.java", *args], EXAMPLES / "java"
    if language == "go":
        return ["go", "run", ".", *args], EXAMPLES / "go"
    return ["node", "shop-events.js", *args], EXAMPLES / "node"


@pytest.mark.parametrize("language", ["java", "go", "node"])
def test_a_shops_producer_in_another_language_feeds_every_user_exactly(kafka, settings: Settings, language):
    tool = {"java": "java", "go": "go", "node": "node"}[language]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not on the PATH: the examples need it (the Makefile's `examples` target)")
    topics = Topics.from_settings(settings.kafka)
    expected = Counter(f"{language}-u{n % USERS}" for n in range(EVENTS))

    async def scenario() -> None:
        await ensure_topics(settings.kafka, kafka)
        worker = await RunningWorker(settings, kafka).start()
        command, folder = _command(language, kafka.bootstrap, topics.clicks)
        sent = await asyncio.to_thread(subprocess.run, command, cwd=folder, capture_output=True, text=True, timeout=240)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        state = worker.worker

        def clicks(user: str) -> int:
            partition = next((p for p in state.users.partitions if state.users.get(p, user)), None)
            return 0 if partition is None else state.users.get(partition, user).clicks

        await until(lambda: all(clicks(user) == count for user, count in expected.items()), 60, f"{language}'s events")
        await until(lambda: state.status.events == EVENTS, 30, "the commit")
        assert {user: clicks(user) for user in expected} == dict(expected)
        assert state.status.reroutes == 0  # the client's default partitioner is the one streamrec expects
        await worker.stop()

    run_scenario(scenario)
