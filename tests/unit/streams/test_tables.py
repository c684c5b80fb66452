"""The changelog tables behind the durability guarantee: what a flush writes,
what it keeps after a failure, and what a restore or Faust's recovery fills."""

from __future__ import annotations

import asyncio

import pytest

from streamrec.foundation.codec import decode, encode
from streamrec.streams.tables import ChangelogTable, flush


class Batch:
    def __init__(self, capacity: int):
        self.capacity, self.records = capacity, []

    def append(self, key: bytes, value: bytes | None, timestamp: None) -> object | None:
        if len(self.records) == self.capacity:
            return None  # full, as aiokafka's BatchBuilder answers
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """aiokafka's batch API, recording what reached 'the broker'; `fail` makes the next acks fail."""

    def __init__(self, capacity: int = 100):
        self.capacity, self.sent, self.fail, self.during_send = capacity, [], False, None

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future:
        if self.during_send:
            self.during_send()
        acked = asyncio.get_running_loop().create_future()
        if self.fail:
            acked.set_exception(OSError("not acknowledged"))
        else:
            self.sent.extend((topic, partition, key, value) for key, value in batch.records)
            acked.set_result(None)
        return acked


def table() -> ChangelogTable[dict]:
    return ChangelogTable("t", "t-changelog", from_wire=dict, to_wire=dict)


def change(rows: ChangelogTable, partition: int, key: str, value: dict) -> None:
    values, dirty = rows.for_update(partition)
    values[key] = value
    dirty.add(key)


def test_a_key_changed_many_times_between_flushes_is_written_once_with_its_last_value():
    rows, producer = table(), Producer()
    for n in range(5):
        change(rows, 0, "u1", {"n": n})
    change(rows, 1, "u2", {"n": 9})
    assert asyncio.run(flush(producer, rows)) == 2 and rows.writes == 2
    written = {(p, k.decode()): decode(v) for _, p, k, v in producer.sent}
    assert written == {(0, "u1"): {"n": 4}, (1, "u2"): {"n": 9}}
    assert asyncio.run(flush(producer, rows)) == 0  # nothing changed since


def test_a_deleted_key_is_written_as_a_tombstone():
    rows, producer = table(), Producer()
    change(rows, 0, "u1", {"n": 1})
    asyncio.run(flush(producer, rows))
    assert rows.delete(0, "u1") and not rows.delete(0, "u1") and rows.get(0, "u1") is None
    asyncio.run(flush(producer, rows))
    assert producer.sent[-1] == ("t-changelog", 0, b"u1", None)


def test_a_failed_flush_marks_every_taken_key_again_for_the_next_one():
    rows, producer = table(), Producer()
    change(rows, 0, "u1", {"n": 1})
    change(rows, 0, "u2", {"n": 2})
    producer.fail = True
    with pytest.raises(OSError):
        asyncio.run(flush(producer, rows))
    producer.fail = False
    assert asyncio.run(flush(producer, rows)) == 2
    assert sorted(k for _, _, k, _ in producer.sent) == [b"u1", b"u2"]


def test_tables_flushed_together_are_marked_again_together_when_one_write_fails():
    users, items, producer = table(), ChangelogTable("i", "i-changelog", from_wire=dict, to_wire=dict), Producer()
    change(users, 0, "u1", {"n": 1})
    change(items, 0, "i1", {"n": 1})
    producer.during_send = lambda: setattr(producer, "fail", bool(producer.sent))  # users acked, items not
    with pytest.raises(OSError):
        asyncio.run(flush(producer, users, items))
    producer.during_send, producer.fail = None, False
    assert asyncio.run(flush(producer, users, items)) == 2  # both again: the commit that failed wrote neither for sure
    assert [(topic, key) for topic, _, key, _ in producer.sent] == [
        ("t-changelog", b"u1"),
        ("t-changelog", b"u1"),
        ("i-changelog", b"i1"),
    ]


def test_a_row_changed_while_a_flush_awaits_the_broker_is_kept_for_the_next_flush():
    rows, producer = table(), Producer()
    change(rows, 0, "u1", {"n": 1})
    producer.during_send = lambda: change(rows, 0, "u1", {"n": 2})
    asyncio.run(flush(producer, rows))
    producer.during_send = None
    assert asyncio.run(flush(producer, rows)) == 1 and decode(producer.sent[-1][3]) == {"n": 2}


def test_a_full_record_batch_is_sent_and_the_rest_goes_in_the_next():
    rows, producer = table(), Producer(capacity=2)
    for n in range(5):
        change(rows, 3, f"u{n}", {"n": n})
    assert asyncio.run(flush(producer, rows)) == 5
    assert sorted(k.decode() for _, p, k, _ in producer.sent if p == 3) == [f"u{n}" for n in range(5)]


def test_a_partition_dropped_in_a_rebalance_is_not_written():
    rows, producer = table(), Producer()
    change(rows, 0, "u1", {"n": 1})
    change(rows, 1, "u2", {"n": 2})
    rows.drop([1])
    assert asyncio.run(flush(producer, rows)) == 1 and rows.partitions == {0}


def test_discard_pending_forgets_the_partitions_with_unflushed_changes():
    rows, producer = table(), Producer()
    change(rows, 0, "u1", {"n": 1})
    asyncio.run(flush(producer, rows))
    change(rows, 1, "u2", {"n": 2})  # its input will be redelivered: restore it, do not keep it half-done
    rows.discard_pending()
    assert rows.partitions == {0} and rows.get(0, "u1") == {"n": 1}


def test_loading_changelog_records_applies_values_and_tombstones_and_hold_keeps_only_the_owned():
    rows = table()
    rows.load(0, b"u1", encode({"n": 1}))
    rows.load(0, b"u2", encode({"n": 2}))
    rows.load(0, b"u1", None)
    rows.load(5, b"u9", encode({"n": 9}))
    rows.hold({0, 2})
    assert rows.partitions == {0, 2} and len(rows) == 1 and rows.get(0, "u2") == {"n": 2}
    assert list(rows.items()) == [(0, "u2", {"n": 2})]
