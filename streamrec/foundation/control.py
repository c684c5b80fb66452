"""Requests on the control topic: how a forget reaches every process.

A request is keyed and partitioned like the user's events (by the shop's raw
id), so the one worker that owns the user's state reads it in order with
their events, and it is committed with them; the trainer reads every
partition. The record holds only the stored id (the pseudonym when
pseudonymisation is on).
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from streamrec.foundation.codec import encode
from streamrec.foundation.kafka import partition_for
from streamrec.foundation.privacy import Pseudonyms
from streamrec.foundation.schema import Forget
from streamrec.foundation.topics import Topics


async def send_forget(
    producer: AIOKafkaProducer, topics: Topics, pseudonyms: Pseudonyms, user_id: str
) -> RecordMetadata:
    """Ask every worker, server and trainer to forget `user_id` (the shop's id);
    returns once the broker holds the request."""
    partitions = len(await producer.partitions_for(topics.control))
    stored = pseudonyms(user_id)
    request = Forget(stored, time.time())
    sent = await producer.send(
        topics.control, encode(request.to_wire()), key=stored.encode(), partition=partition_for(user_id, partitions)
    )
    return await sent
