"""The live overview the console shows, sampled by the API server.

A server holds no worker's counters, so it reads what the workers write:
events counted (the item-statistics replica it already follows), the
recommendations published (their `latency_ms`, read from the topic's end),
dead letters by reason (their `reason` header), the worker group's lag per
partition (committed offsets against the ends, asked of the cluster) and each
worker's own `/status` (its publisher's backlog, errors and served version),
and every server's heartbeat on `recs.serving` (the version it serves; this
server writes its own there).
Workers are found through the group's members (Apache Kafka describes what
each advertised; tansu does not) and through the peers the workers already
asked name, starting from this host's own worker URL. Every SAMPLE_S a point
is kept, for the last KEPT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice

import httpx
import numpy as np
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streamrec.foundation.codec import decode, encode
from streamrec.foundation.http import API_KEY_HEADER, Access
from streamrec.foundation.kafka import (
    FollowedTopic,
    KafkaConnection,
    admin_client,
    partitions_of,
    reader,
    start_producer,
)
from streamrec.foundation.topics import Topics
from streamrec.serving.arms import MAX_ARMS_COUNTED, AnswerCounts
from streamrec.serving.live import ItemStatsReplica

log = logging.getLogger(__name__)

SAMPLE_S = 2.0  # one point this often
LAG_EVERY_S = 10.0  # the group's lag is asked of the cluster this often
KEPT_S = 600.0  # the time series a page shows: the last ten minutes
REASONS_KEPT = 50  # distinct dead-letter reasons counted; the rest count as "other"
LATENCIES_KEPT = 20_000  # recent publish latencies, for p50/p99
WORKERS_ASKED = 64  # at most this many workers' /status, each within WORKER_TIMEOUT_S
WORKER_TIMEOUT_S = 2.0
VERSION_CHARS = 64  # a version name as another process reported it, cut to this
SERVERS_KEPT = 256  # distinct servers remembered from recs.serving; the rest are not shown
SERVER_SILENT_S = 3 * LAG_EVERY_S  # a server not heard of for this long is not listed
PUBLISHER_COUNTS = ("backlog_users", "published", "without_model", "errors", "p50_ms", "p99_ms")

Advertised = tuple[str, str]  # a worker's URL and its signature
WorkerFinder = Callable[[AIOKafkaAdminClient, str], Awaitable[Sequence[Advertised]]]  # (admin, group) -> members


@dataclass
class Point:
    t: float  # wall clock
    events_per_s: float
    publishes_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    lag: int
    dead_letters: int


class RecommendationsTap(FollowedTopic):
    """The recommendations topic from its end: publishes and their latencies.

    Its partitions stay paused between polls, so it fetches once a sample
    rather than as each message arrives (on tansu every fetch lists all of a
    partition's batches: following it live cost the broker more and more)."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.published = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCIES_KEPT)

    async def start(self, kafka: KafkaConnection) -> None:
        tps = await self._assign_every_partition(kafka)
        await self._consumer.seek_to_end(*tps)
        self._consumer.pause(*tps)

    async def poll(self, timeout_ms: int = 0) -> int:
        """Everything published since the last poll."""
        consumer = self._consumer
        consumer.resume(*consumer.assignment())
        try:
            taken = total = await super().poll(timeout_ms=200)
            while taken:
                total += (taken := await super().poll(timeout_ms=50))
            return total
        finally:
            consumer.pause(*consumer.assignment())

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a forgotten user's tombstone
            return
        with contextlib.suppress(Exception):  # a value that is not a recommendation is not counted
            self.latencies_ms.append(float(decode(value)["latency_ms"]))
            self.published += 1


class DeadLetterTap(FollowedTopic):
    """Dead letters from the beginning, counted by their `reason` header."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.reasons: Counter[str] = Counter()

    def apply_record(self, record) -> None:
        reason = next((v.decode(errors="replace") for k, v in record.headers or () if k == "reason"), "unknown")
        reason = reason.split(":")[0][:120]  # the kind, not the record's own text
        if reason not in self.reasons and len(self.reasons) >= REASONS_KEPT:
            reason = "other"
        self.reasons[reason] += 1


class ServingTap(FollowedTopic):
    """Servers' heartbeats on `recs.serving`: the newest version each serves
    and the answers it made per arm since it started. Anyone who can write the
    topic can write one: only a short name, the time and bounded counts are
    kept, of at most SERVERS_KEPT servers."""

    def __init__(self, topic: str):
        super().__init__(topic)
        self.servers: dict[str, tuple[str | None, float]] = {}  # server -> (version, wall clock)
        self.answers: dict[str, dict[str, int]] = {}  # server -> arm key -> answers

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        with contextlib.suppress(Exception):  # a record that is not a heartbeat is ignored
            server = key.decode()[:200]
            if value is None:
                self.servers.pop(server, None)
                self.answers.pop(server, None)
                return
            beat = decode(value)
            version, ts = beat["version"], float(beat["ts"])
            if server in self.servers or len(self.servers) < SERVERS_KEPT:
                self.servers[server] = (_version_name(version), ts)
                self.answers[server] = _answer_counts(beat.get("answers"))

    def heard(self, now: float) -> list[dict]:
        return [
            {"server": server, "version": version, "seen_s_ago": round(max(0.0, now - ts), 1)}
            for server, (version, ts) in sorted(self.servers.items())
            if now - ts <= SERVER_SILENT_S
        ]


@dataclass
class Pulse:
    """The sampler: start it with the server, read `overview()` from a request."""

    kafka: KafkaConnection
    topics: Topics
    item_stats: ItemStatsReplica
    access: Access
    find_workers: WorkerFinder | None = None
    local_worker: Advertised | None = None  # asked first; left out of the table when it does not answer
    server: str = ""  # this server's name in its heartbeats
    serving: Callable[[], str | None] = lambda: None  # the version this server serves now
    answer_counts: AnswerCounts = field(default_factory=AnswerCounts)  # the answers this server makes per arm
    points: deque[Point] = field(default_factory=lambda: deque(maxlen=int(KEPT_S / SAMPLE_S)))
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    workers: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recommendations = RecommendationsTap(self.topics.recommendations)
        self.dead_letters = DeadLetterTap(self.topics.deadletter)
        self.servers = ServingTap(self.topics.serving)

    async def run(self, stop: asyncio.Event) -> None:
        taps = (self.recommendations, self.dead_letters, self.servers)
        await asyncio.gather(*(tap.start(self.kafka) for tap in taps))
        self.answer_counts.resume(self.servers.answers.get(self.server, {}))  # a restarted server counts on
        admin, ends, beats = admin_client(self.kafka), reader(self.kafka), await start_producer(self.kafka)
        await admin.start()
        await ends.start()
        last = (time.monotonic(), self.item_stats.events_counted(), self.recommendations.published)
        lag_due = 0.0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SAMPLE_S)
                for tap in taps:
                    await tap.poll()
                if time.monotonic() >= lag_due:
                    lag_due = time.monotonic() + LAG_EVERY_S
                    with contextlib.suppress(Exception):  # a heartbeat missed is sent again next time
                        await self._beat(beats)
                    with contextlib.suppress(Exception):  # a cluster that does not answer leaves the last lag
                        self.lag_by_partition = await self._lag(admin, ends)
                    with contextlib.suppress(Exception):  # nor the last workers
                        self.workers = await self._workers(admin)
                last = self._sample(last)
        finally:
            await asyncio.gather(*(tap.stop() for tap in taps), admin.close(), ends.stop(), beats.stop())

    def _sample(self, last: tuple[float, int, int]) -> tuple[float, int, int]:
        now, events, published = time.monotonic(), self.item_stats.events_counted(), self.recommendations.published
        then, last_events, last_published = last
        new = published - last_published
        recent = list(islice(reversed(self.recommendations.latencies_ms), new))
        p50, p99 = (float(v) for v in np.percentile(recent, [50, 99])) if recent else (None, None)
        elapsed = max(now - then, 1e-9)
        self.points.append(
            Point(
                time.time(),
                round((events - last_events) / elapsed, 1),
                round(new / elapsed, 1),
                p50,
                p99,
                sum(self.lag_by_partition.values()),
                sum(self.dead_letters.reasons.values()),
            )
        )
        return now, events, published

    async def _lag(self, admin, consumer) -> dict[str, int]:
        """Records not yet processed by the worker group, per event partition
        (the partitions named: tansu drops a connection asking for all; never
        below 0: tansu answers an end a batch short)."""
        inputs = [self.topics.clicks, self.topics.purchases]
        tps = [TopicPartition(t, p) for t, ps in (await partitions_of(self.kafka, inputs)).items() for p in ps]
        committed = await admin.list_consumer_group_offsets(self.topics.worker_group, partitions=tps)
        ends = await consumer.end_offsets(tps) if tps else {}
        return {
            f"{tp.topic}[{tp.partition}]": max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0))
            for tp in sorted(ends)
        }

    async def _beat(self, producer) -> None:
        beat = {"version": self.serving(), "ts": time.time(), "answers": dict(self.answer_counts.by_arm)}
        await producer.send_and_wait(self.topics.serving, encode(beat), key=self.server.encode())

    async def _workers(self, admin) -> list[dict]:
        """Each worker's /status: the group's members and this host's worker,
        then the peers they name. Only URLs this server vouches for are asked
        (`Access.vouches_for`: any group member can advertise any URL)."""
        members: list[Advertised] = []
        if self.find_workers is not None:
            with contextlib.suppress(Exception):  # a broker that cannot describe groups
                members = list(await self.find_workers(admin, self.topics.worker_group))
        local = [self.local_worker] if self.local_worker is not None else []
        statuses: dict[Advertised, dict] = {}
        key = self.access.peer_key
        async with httpx.AsyncClient(timeout=WORKER_TIMEOUT_S, headers={API_KEY_HEADER: key} if key else {}) as client:
            to_ask = list(dict.fromkeys(members + local))
            while to_ask and len(statuses) < WORKERS_ASKED:
                asked = to_ask[: WORKERS_ASKED - len(statuses)]
                for worker, status in zip(
                    asked, await asyncio.gather(*(self._ask(client, w) for w in asked)), strict=True
                ):
                    statuses[worker] = status
                peers = (tuple(peer) for status in statuses.values() for peer in status.pop("peers", ()))
                to_ask = [peer for peer in dict.fromkeys(peers) if peer not in statuses]
        silent_local = [w for w in local if "error" in statuses.get(w, {}) and w not in members]
        return [status for worker, status in statuses.items() if worker not in silent_local]

    async def _ask(self, client: httpx.AsyncClient, worker: Advertised) -> dict:
        url, signature = worker
        if not self.access.vouches_for(url, signature):
            return {"url": url[:200], "error": "advertised a URL this server does not trust"}
        try:
            answer = await client.get(f"{url}/status")
            answer.raise_for_status()
            status = answer.json()
            publisher = status.get("publisher") or {}
            return {
                "url": url,
                "ready": bool(status.get("ready")),
                "lag": int(status.get("lag") or 0),
                "partitions": [int(p) for p in status.get("partitions", [])][:1024],
                "publisher": _publisher_view(publisher) if publisher else None,
                "peers": [(str(u), str(s)) for u, s in status.get("peers", [])][:WORKERS_ASKED],
            }
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            return {"url": url, "error": f"no status: {str(exc)[:200]}"}

    def answers(self) -> Counter[str]:
        """Answers per arm made by every server heard (within the heartbeats'
        retention), this one's counted to now."""
        total: Counter[str] = Counter()
        for server, counts in self.servers.answers.items():
            if server != self.server:
                total.update(counts)
        total.update(self.answer_counts.by_arm)
        return total

    def overview(self) -> dict:
        answering = [w["publisher"] for w in self.workers if w.get("publisher")]
        return {
            "points": [asdict(point) for point in self.points],
            "lag_by_partition": self.lag_by_partition,
            "dead_letters_by_reason": dict(self.dead_letters.reasons.most_common()),
            "workers": self.workers,
            "servers": self.servers.heard(time.time()),
            "publisher_backlog": sum(p["backlog_users"] or 0 for p in answering) if answering else None,
            "publisher_errors": sum(p["errors"] or 0 for p in answering) if answering else None,
        }


def _publisher_view(publisher: dict) -> dict:
    """A worker's publisher as the page shows it: numbers or None, a short version name."""
    version = publisher.get("model_version")
    counts = {name: publisher.get(name) for name in PUBLISHER_COUNTS}
    return {
        "model_version": _version_name(version),
        **{name: v if isinstance(v, int | float) and not isinstance(v, bool) else None for name, v in counts.items()},
    }


def _answer_counts(answers: object) -> dict[str, int]:
    """A heartbeat's answers per arm, bounded: only string keys and whole counts."""
    if not isinstance(answers, dict):
        return {}
    counts = islice(answers.items(), MAX_ARMS_COUNTED)
    return {k: v for k, v in counts if isinstance(k, str) and len(k) <= 200 and type(v) is int and v >= 0}


def _version_name(version: object) -> str | None:
    return None if version is None else str(version)[:VERSION_CHARS]
