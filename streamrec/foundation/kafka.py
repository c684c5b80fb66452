"""Kafka clients set up the way streamrec needs them, shared by every module.

Every client is made from an explicit `KafkaConnection` (where the brokers
are, how to authenticate and encrypt), built once per process from its
settings and handed down: there is no process-wide default to forget.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from streamrec.foundation.schema import show
from streamrec.foundation.settings import KafkaSettings, SettingsError

log = logging.getLogger(__name__)

# The max.message.bytes of the topics streamrec creates. Its producers' requests
# stay below it: an accepted value (STREAMREC_MAX_VALUE_BYTES, 1 MiB) re-routed
# with its key and headers, a changelog batch (1 MiB), a dead letter (64 KiB).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
# A transaction open longer is aborted by the broker: a worker that died
# mid-commit holds back read_committed readers of its partitions at most this long.
TRANSACTION_TIMEOUT_MS = 10_000


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """The aiokafka options for the settings' TLS and SASL (none for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile, certfile=settings.ssl_certfile, keyfile=settings.ssl_keyfile
        )
    if protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    return options


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how every client reaches them (TLS, SASL),
    as Quix Streams' ConnectionConfig: one per process, passed explicitly."""

    bootstrap: str  # host:port,...
    security: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # aiokafka options; secrets
    # What this process learned about the cluster (whether it grants idempotent producers).
    facts: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: KafkaSettings, bootstrap: str) -> KafkaConnection:
        """A connection to `bootstrap` with the settings' TLS and SASL."""
        return cls(bootstrap, security_options(settings))

    def to_child(self) -> tuple[str, dict[str, bool]]:
        """What a spawned process needs to connect again (`from_parent`): an SSLContext does not pickle."""
        return self.bootstrap, dict(self.facts)

    @classmethod
    def from_parent(cls, settings: KafkaSettings, sent: tuple[str, dict[str, bool]]) -> KafkaConnection:
        """The connection a parent sent (`to_child`), its TLS and SASL made again from the same settings."""
        bootstrap, facts = sent
        return cls(bootstrap, security_options(settings), facts)

    @property
    def secured(self) -> bool:
        return bool(self.security)

    def client_options(self) -> dict[str, Any]:
        """What every aiokafka client takes: the brokers and the security options."""
        return {"bootstrap_servers": self.bootstrap, **self.security}

    def __str__(self) -> str:
        return self.bootstrap


def admin_client(kafka: KafkaConnection) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka.client_options())


@functools.lru_cache(maxsize=1 << 18)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default (murmur2) partition of a key, as Java and aiokafka producers
    compute it. Cached: murmur2 is pure Python (about 9 us a call here)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def start_producer(kafka: KafkaConnection, **options: Any) -> AIOKafkaProducer:
    """An idempotent producer with acks=all, or, on a broker that refuses
    producer ids (tansu's memory storage does), acks=all without idempotence.

    The fallback is safe for streamrec's data: a retried event is absorbed by
    its event_id, a retried changelog record rewrites the same key's value.
    """
    options = _producer_options(kafka, options)
    if kafka.facts.get("idempotence", True):
        producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **options)
        refused = await _start_unless_refused(producer)
        if refused is None:
            return producer
        _note_refusal(kafka, refused)
    producer = AIOKafkaProducer(acks="all", **options)
    await producer.start()
    return producer


async def start_transactional_producer(
    kafka: KafkaConnection, transactional_id: str, **options: Any
) -> AIOKafkaProducer:
    """A transactional producer (idempotent, acks=all). A broker without
    transactions (tansu's memory storage) is a SettingsError: at-least-once is
    the mode there. A transaction left open by a crash is aborted by the
    coordinator when the same `transactional_id` starts again, or after
    TRANSACTION_TIMEOUT_MS."""
    producer = AIOKafkaProducer(
        **_producer_options(kafka, options),
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        enable_idempotence=True,
        acks="all",
    )
    refused = await _start_unless_refused(producer)
    if refused is not None:
        raise SettingsError(
            f"STREAMREC_PROCESSING_GUARANTEE=exactly_once needs a broker with transactions; {kafka.bootstrap} "
            f"refused a transactional producer ({type(refused).__name__}; tansu has none): use at_least_once there"
        )
    return producer


def _producer_options(kafka: KafkaConnection, options: dict[str, Any]) -> dict[str, Any]:
    return {"max_request_size": MAX_MESSAGE_BYTES - 64 * 1024, **kafka.client_options(), **options}


class _ExpectedRefusal(logging.Filter):
    """aiokafka logs a broker's refusal of producer ids as an ERROR; while a
    producer starts, it is an answer, which the caller reports its own way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "InitProducerIdRequest" not in record.getMessage()


async def _start_unless_refused(producer: AIOKafkaProducer) -> KafkaError | None:
    """Start the producer; a broker's refusal (of producer ids) is returned, the producer stopped."""
    sender_log, refusal = logging.getLogger("aiokafka.producer.sender"), _ExpectedRefusal()
    sender_log.addFilter(refusal)
    try:
        await producer.start()
        return None
    except KafkaError as exc:
        await producer.stop()
        return exc
    finally:
        sender_log.removeFilter(refusal)


def _note_refusal(kafka: KafkaConnection, exc: KafkaError) -> None:
    """Remember that the cluster refuses idempotence (later producers skip
    the question) and say so once per process."""
    first = kafka.facts.get("idempotence") is not False
    kafka.facts["idempotence"] = False
    if first:
        log.warning(
            "broker %s refused an idempotent producer (%s); using acks=all without idempotence "
            "(retries may repeat records; event ids absorb them)",
            kafka.bootstrap,
            type(exc).__name__,
        )


def leave_even_at_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Make `consumer.stop()` leave its group even at generation 0. tansu
    numbers a group's first generation 0 and aiokafka leaves only from
    generation 1 on, so a stopped member kept its partitions until its session
    timed out: each restart on the embedded broker waited about 8 s for them.
    (The LeaveGroup request names the member, not the generation; aiokafka
    offers no public way to leave.)"""
    coordinator = consumer._coordinator
    if coordinator is not None and coordinator.generation == 0:
        coordinator.generation = 1


async def partitions_of(kafka: KafkaConnection, topics: list[str]) -> dict[str, list[int]]:
    """Each existing topic's partitions, asked of the cluster. (A consumer that
    has just started may know no topic yet: tansu sends every topic's metadata
    at once, Apache Kafka only what was asked for; a catalog view that trusted
    it read 1 of 4 partitions there.)"""
    admin = admin_client(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described if not d["error_code"]}


def reader(kafka: KafkaConnection, group_id: str | None = None) -> AIOKafkaConsumer:
    """A consumer for reading assigned partitions; with a `group_id` its
    positions can be committed (the trainer's lag is then visible)."""
    return AIOKafkaConsumer(
        **kafka.client_options(),
        group_id=group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",  # never a row of an aborted transaction (exactly_once)
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], on_records: Callable[[TopicPartition, list], None]
) -> None:
    """Feed every record of `tps` from the consumer's positions to the end.

    "The end" is the high watermark each fetch response carries, not the
    ListOffsets answer: some Kafka-compatible brokers (tansu 0.6) answer the
    last batch's base offset there, which would silently drop a batch.
    """
    remaining = set(tps)
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=100_000)
        for tp, records in batches.items():
            on_records(tp, records)
        for tp in list(remaining):
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                remaining.discard(tp)


async def end_offsets(kafka: KafkaConnection, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's end (the offset its next record will take), from a
    fetch response's high watermark rather than ListOffsets (see `read_to_end`)."""
    consumer = reader(kafka)
    await consumer.start()
    try:
        consumer.assign(tps)
        listed = await consumer.end_offsets(tps)
        for tp in tps:  # at most one batch before the true end
            consumer.seek(tp, listed[tp])
        ends: dict[TopicPartition, int] = {}
        while len(ends) < len(tps):
            await consumer.getmany(*tps, timeout_ms=100, max_records=1)
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp] = highwater
        return ends
    finally:
        await consumer.stop()


class FollowedTopic:
    """Every partition of one topic, read from the beginning and then followed
    (no consumer group: each process keeps its own whole copy, the way a Faust
    GlobalTable does). Subclasses say what a record means in `apply`."""

    def __init__(self, topic: str):
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        raise NotImplementedError

    def apply_record(self, record: Any) -> None:
        """One consumer record; override where the partition matters too."""
        self.apply(record.key, record.value)

    async def start(self, kafka: KafkaConnection) -> None:
        """Read the topic up to its current end before returning."""
        tps = await self._assign_every_partition(kafka)
        await self._consumer.seek_to_beginning(*tps)
        await read_to_end(self._consumer, tps, lambda tp, records: self._apply_all(records))

    async def _assign_every_partition(self, kafka: KafkaConnection) -> list[TopicPartition]:
        """A started consumer of its own, assigned every partition of the topic."""
        partitions = (await partitions_of(kafka, [self.topic])).get(self.topic) or [0]
        self._consumer = reader(kafka)
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(tps)
        return tps

    async def poll(self, timeout_ms: int = 0) -> int:
        """Apply whatever records have arrived; returns how many."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=50_000)
        return sum(self._apply_all(records) for records in batches.values())

    def _apply_all(self, records: list) -> int:
        for record in records:
            self.apply_record(record)
        return len(records)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


Row = TypeVar("Row")


class PartitionRows(FollowedTopic, Generic[Row]):
    """A workers' changelog table as a reader sums it: every partition's row
    per key (the workers keep one per event partition). A row that does not
    parse is logged and skipped: the one before it stays."""

    def __init__(self, topic: str, what: str, parse: Callable[[bytes], Row]):
        super().__init__(topic)
        self.what, self.parse = what, parse
        self.rows: dict[tuple[int, str], Row] = {}  # (partition, key) -> that partition's row

    def accepts(self, key: str) -> bool:
        """Whether a key is one the workers write (all, unless a subclass says otherwise)."""
        return True

    def apply_record(self, record: Any) -> None:
        if record.key is None:
            return
        slot = (record.partition, record.key.decode(errors="replace"))
        if not self.accepts(slot[1]):
            log.warning("ignoring a %s row with a malformed key %s", self.what, show(slot[1]))
            return
        if record.value is None:
            self.rows.pop(slot, None)
            return
        try:
            self.rows[slot] = self.parse(record.value)
        except Exception as exc:  # noqa: BLE001 - an unreadable row must not stop its reader
            log.warning("ignoring an unreadable %s row %s: %s: %s", self.what, slot, type(exc).__name__, exc)
