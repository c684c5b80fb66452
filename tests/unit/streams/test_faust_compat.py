"""The faust engine's one door into faust-streaming's internals: the version
check, the commit that flushes first, held commits, and what `mount` returns."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest

from streamrec.foundation.settings import Settings
from streamrec.streams import faust_compat
from streamrec.streams.faust_engine import mount


def test_the_tested_faust_streaming_is_accepted_and_any_other_refused_with_what_to_install():
    faust_compat.check_installed()  # the installed one
    faust_compat.check_installed("0.15.9")
    for other in ("0.16.0", "1.0.1", "0.14.2"):
        with pytest.raises(faust_compat.FaustVersionError, match=r"found .*pip install 'faust-streaming>=0.15,<0.16'"):
            faust_compat.check_installed(other)


def _consumer(calls: list) -> SimpleNamespace:
    async def commit(offsets) -> bool:
        calls.append(("commit", offsets))
        return True

    producer = SimpleNamespace(_ensure_producer=lambda: "aiokafka-producer")
    return SimpleNamespace(_commit=commit, app=SimpleNamespace(producer=producer))


def test_a_commit_waits_for_the_flush_with_the_apps_producer():
    calls: list = []
    consumer = _consumer(calls)

    async def flush(writer) -> None:
        calls.append(("flush", writer))

    faust_compat.commit_after(consumer, flush)
    assert asyncio.run(consumer._commit({"tp": 5}))
    assert calls == [("flush", "aiokafka-producer"), ("commit", {"tp": 5})]


def test_a_failed_flush_fails_the_commit():
    calls: list = []
    consumer = _consumer(calls)

    async def failing(writer) -> None:
        raise OSError("broker down")

    faust_compat.commit_after(consumer, failing)
    with pytest.raises(OSError):
        asyncio.run(consumer._commit({"tp": 5}))
    assert calls == []  # nothing committed


def test_held_commits_commit_nothing():
    calls: list = []
    consumer = _consumer(calls)
    faust_compat.hold_commits(consumer)
    assert asyncio.run(consumer._commit({"tp": 5})) is False and calls == []


def test_what_mount_returns_has_the_queries_and_no_lifecycle_to_trip_over():
    app = faust.App("compat-test", broker="kafka://127.0.0.1:9", autodiscover=False, table_standby_replicas=0)
    agents = mount(app, Settings(topic_prefix="c."))
    for lifecycle in ("start", "run", "stop", "close", "abort"):
        assert not hasattr(agents, lifecycle)  # the app runs the agents
    assert agents.popular_items(3) == [] and agents.ready_partitions == frozenset()


def test_events_redelivered_after_a_refused_commit_are_committed_again():
    """Faust's own consumer, its broker calls replaced: the group refuses a
    commit of offsets 10-12 (a rebalance), the partition is read again from
    10, and those acks must lead to a commit of 13, not be dropped."""
    app = faust.App("compat-test", broker="kafka://127.0.0.1:9", autodiscover=False)
    tp = faust.types.TP("clicks", 0)
    consumer, sent = app.consumer, []

    async def group(offsets) -> bool:
        sent.append(dict(offsets))
        return len(sent) > 1  # the first is refused

    async def flushed() -> None:
        return None

    consumer._commit, consumer.assignment, app.producer.flush = group, lambda: {tp}, flushed
    app.topics.add(app.topic("clicks"))
    faust_compat.forget_refused_commits(consumer)

    def read(offset: int) -> None:
        message = faust.types.Message("clicks", 0, offset, 0.0, 0, None, b"k", b"v", b"")
        consumer.ack(message)

    async def scenario() -> None:
        await app.topics._update_indices()  # what subscribing does: acks count for "clicks"
        consumer._committed_offset[tp] = 10
        for offset in (10, 11, 12):
            read(offset)
        assert await consumer.commit() is False  # refused
        for offset in (10, 11, 12):  # redelivered from the group's offset
            read(offset)
        assert await consumer.commit() is True

    asyncio.run(scenario())
    assert sent == [{tp: 13}, {tp: 13}]


def test_positions_are_committed_only_for_partitions_still_assigned_and_never_empty():
    calls: list = []
    consumer = _consumer(calls)
    consumer.assignment = lambda: {"tp0"}
    assert asyncio.run(faust_compat.commit_positions(consumer, {"tp0": 7, "tp1": 9}))
    assert asyncio.run(faust_compat.commit_positions(consumer, {"tp1": 9})) is False  # Faust crashes on {}
    assert calls == [("commit", {"tp0": 7})]
