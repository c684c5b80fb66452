"""A forget request: keyed and partitioned like the user's events, holding only the stored id."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from streamrec.foundation.codec import decode
from streamrec.foundation.control import send_forget
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics


class Producer:
    def __init__(self):
        self.sent = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))

    async def send(self, topic, value, key, partition):
        self.sent.append((topic, value, key, partition))
        done = asyncio.get_running_loop().create_future()
        done.set_result("metadata")
        return done


def test_a_forget_goes_to_the_partition_of_the_users_events_under_the_stored_id():
    settings = Settings(pseudonymise_key=SecretStr("k"))
    producer, pseudonyms = Producer(), Pseudonyms.from_settings(settings.access)
    assert asyncio.run(send_forget(producer, Topics.from_settings(settings.kafka), pseudonyms, "alice")) == "metadata"
    topic, value, key, partition = producer.sent[0]
    stored = pseudonyms("alice")
    assert topic == "recs.control" and key == stored.encode() and stored != "alice"
    assert partition == partition_for("alice", 8)  # the raw id's partition: the owner of the user's events
    assert decode(value)["user_id"] == stored and decode(value)["type"] == "forget"
    assert b"alice" not in value
