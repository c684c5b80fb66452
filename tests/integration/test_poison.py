"""Hostile input on every input topic (events, catalog, control, model
announcements) of a real worker (publishing), a real API server and the
trainer's reader: arbitrary bytes, maps with extreme or odd fields, deep nesting,
huge batches, broken Unicode, forged model announcements. Afterwards both are
alive, every bad record or element is in the dead-letter topic exactly once,
and a final batch of good events is counted exactly."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import msgpack
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streamrec.foundation.codec import Rejected, decode_records
from streamrec.foundation.schema import Item, Limits, validate_control, validate_event, validate_item
from streamrec.foundation.store import ModelStore
from streamrec.foundation.topics import Topics, ensure_topics
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop import ShopProducer
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import open_cache, refresh_cache
from tests.conftest import free_port
from tests.integration.helpers import read_topic, until
from tests.versions import publish_random_version

VALUES_PER_EXAMPLE = 250
EXAMPLES = 2
CATALOG = [Item(f"i{n}", f"item {n}", f"c{n % 5}") for n in range(40)]

odd_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "u\ud800", "\udfff", "x" * 300, "Zoë", "\x00", "..", "/etc/passwd"]),
)
odd_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([time.time() + 3 * 365 * 86_400, 1.7e12, -1, 0, True, "noon", None]),
)
good_events = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=12),
        "type": st.sampled_from(["click", "purchase"]),
        "user_id": st.text(min_size=1, max_size=12),
        "item_id": st.sampled_from([i.item_id for i in CATALOG]),
        "ts": st.floats(1e9, 1.7e9),
    }
)
odd_fields = st.dictionaries(
    st.sampled_from(["event_id", "type", "user_id", "item_id", "ts", "quantity", "price", "query", "session_id"]),
    st.one_of(odd_text, odd_number, st.sampled_from(["click", "purchase", "view", None])),
    max_size=2,
)
# A valid event with up to two fields made odd: the records that pass most checks are the dangerous ones.
event_maps = st.builds(lambda event, odd: {**event, **odd}, good_events, odd_fields)
item_maps = st.fixed_dictionaries(
    {"item_id": odd_text, "title": odd_text, "category": odd_text},
    optional={"price": odd_number, "in_stock": st.sampled_from([True, False, "no", None]), "ts": odd_number},
)


def _pack(value: object) -> bytes:
    """msgpack where it can carry the value, else JSON (lone surrogates, huge ints)."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (UnicodeEncodeError, OverflowError, ValueError, TypeError):
        return json.dumps(value).encode()


poison = st.one_of(
    st.binary(max_size=300),
    st.none(),  # a tombstone
    event_maps.map(_pack),
    st.lists(event_maps, min_size=1, max_size=5).map(_pack),  # batches mixing good and bad
    item_maps.map(_pack),
    st.integers(1, 4000).map(lambda depth: b"\x91" * depth + b"\xc0"),  # msgpack nested arrays
    st.integers(1, 4000).map(lambda depth: b"[" * depth + b"]" * depth),  # JSON nested arrays
    st.integers(1001, 3000).map(lambda n: msgpack.packb([{"type": "click"}] * n)),  # over the batch limit
    st.sampled_from([b"{", b"[]", b"{}", b"\xc1", b'"\\ud800"', b"\xff" * 1_100_000]),
)
# The defects found by hand (issue 12), always in the corpus beside what hypothesis draws.
_GOOD = {"event_id": "h", "type": "click", "user_id": "hand", "item_id": "i1", "ts": 1.6e9}
KNOWN_POISON = [
    ("clicks", _pack({**_GOOD, "event_id": "h1", "ts": time.time() + 3 * 365 * 86_400})),
    ("clicks", json.dumps({**_GOOD, "event_id": "h2", "user_id": "u\ud800"}).encode()),
    ("clicks", json.dumps({**_GOOD, "event_id": "h3", "item_id": "\udfff"}).encode()),
    ("purchases", json.dumps({**_GOOD, "event_id": "h4", "type": "purchase", "quantity": 2**70}).encode()),
    ("clicks", b"\x91" * 1000 + b"\xc0"),
    ("catalog", b"\x91" * 1000 + b"\xc0"),
    ("catalog", json.dumps({"item_id": "i1", "title": "bad\ud800", "category": "c1"}).encode()),
    ("catalog", json.dumps({"item_id": "i2", "title": "t", "category": "\ud800"}).encode()),
    ("catalog", _pack({"item_id": "i3", "title": "t", "category": "c", "ts": time.time() + 10 * 86_400})),
    ("control", _pack({"type": "forget"})),
    ("control", _pack({"type": "forget-everyone", "user_id": "hand", "ts": 1.0})),
    ("control", _pack({"type": "forget", "user_id": "x" * 300, "ts": 1.0})),
    ("control", json.dumps({"type": "forget", "user_id": "u\ud800", "ts": 1.0}).encode()),
    ("control", _pack([{"type": "forget", "user_id": "hand", "ts": 1e12}])),
]
KNOWN_ANNOUNCEMENTS = [_pack({"version": v}) for v in ("", "../x", "/etc", "..", 7)] + [b"\xc1", b"{"]

announcements = st.one_of(
    st.binary(max_size=50),
    st.fixed_dictionaries({"version": st.one_of(odd_text, odd_number)}).map(_pack),
)


def _rejections(topic: str, value: bytes | None, topics: Topics) -> int:
    """How many dead letters the contract asks for: one per refused value or element."""
    if topic == topics.catalog:
        if value is None:
            return 0  # a catalog tombstone deletes the item
        return sum(type(r) is Rejected for r in decode_records(value, Limits(), validate_item))
    if topic == topics.control:
        return sum(type(r) is Rejected for r in decode_records(value, Limits(), validate_control))
    return sum(type(r) is Rejected for r in decode_records(value, Limits(), validate_event))


async def _system(settings, kafka):
    """Catalog, a current model, a publishing worker and an API server."""
    await ensure_topics(settings.kafka, kafka)
    async with ShopProducer(kafka, settings) as shop:
        await shop.send_catalog(CATALOG)
    publish_random_version(ModelStore.in_data_dir(settings.data_dir), CATALOG)
    stop = asyncio.Event()
    process = WorkerProcess(settings, kafka)
    live = LiveModel(LiveConfig.from_settings(settings))
    tasks = [asyncio.create_task(process.run(stop)), asyncio.create_task(run_server(settings, kafka, stop, live))]
    await until(lambda: process.publishing and live.current is not None or any(t.done() for t in tasks), 60, "up")
    return stop, process, live, tasks


def _alive(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        if task.done():
            task.result()  # shows the crash
            raise AssertionError("a process stopped")


@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    values=st.lists(
        st.tuples(st.sampled_from(["clicks", "purchases", "catalog", "control"]), poison),
        min_size=VALUES_PER_EXAMPLE,
        max_size=VALUES_PER_EXAMPLE,
    ),
    forged=st.lists(announcements, min_size=5, max_size=10),
)
def test_hostile_records_are_dead_lettered_once_and_nothing_stops(kafka, settings, values, forged):
    tag = f"p{time.monotonic_ns() % 10**9}"
    settings = settings.derive(
        **{
            "topic_prefix": f"{tag}.",
            "app_id": tag,
            "api_port": free_port(),
            "worker_port": free_port(),
            "index_kind": "flat",
            "publish_interval_s": 0.05,
            "data_dir": settings.data_dir / tag,
        }
    )
    topics = Topics.from_settings(settings.kafka)
    by_name = {
        "clicks": topics.clicks,
        "purchases": topics.purchases,
        "catalog": topics.catalog,
        "control": topics.control,
    }

    async def scenario() -> None:
        stop, process, live, tasks = await _system(settings, kafka)
        served = live.version
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            expected = Counter()
            for n, (name, value) in enumerate(KNOWN_POISON + values):
                topic = by_name[name]
                sent = await producer.send_and_wait(topic, value, key=f"k{n % 7}".encode())
                expected[(topic, sent.partition, sent.offset)] = _rejections(topic, value, topics)
            for announcement in KNOWN_ANNOUNCEMENTS + forged:
                await producer.send_and_wait(topics.model_updates, announcement, key=b"two-tower")
            total = sum(expected.values())
            await until(
                lambda: process.worker.status.dead_letters >= total or any(t.done() for t in tasks),
                120,
                f"{total} dead letters",
            )
            _alive(tasks)

            # The good batch after the storm, from users the storm did not touch.
            async with ShopProducer(kafka, settings) as shop:
                for n in range(60):
                    await shop.click(f"good{n % 6}", CATALOG[n % len(CATALOG)].item_id, event_id=f"g{n}")
            async with httpx.AsyncClient(timeout=5) as http:

                async def good_clicks() -> list[int | None]:
                    found = []
                    for user in range(6):
                        answer = await http.get(f"http://127.0.0.1:{settings.worker_port}/users/good{user}")
                        found.append(answer.json()["clicks"] if answer.status_code == 200 else None)
                    return found

                deadline = time.monotonic() + 30
                while await good_clicks() != [10] * 6 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert await good_clicks() == [10] * 6
                api = f"http://127.0.0.1:{settings.api_port}"
                assert (await http.get(f"{api}/recommendations/good0?k=5")).status_code == 200
                assert (await http.get(f"{api}/healthz")).status_code == 200
            _alive(tasks)
            assert live.version == served  # no forged announcement moved the server
            assert process.worker.status.dead_letters == total

            dead = await read_topic(kafka, topics.deadletter, settings.partitions)
            seen = Counter()
            for record in dead:
                headers = dict(record.headers)
                source = (
                    headers["source_topic"].decode(),
                    int(headers["source_partition"]),
                    int(headers["source_offset"]),
                )
                seen[source] += 1
            assert +seen == +expected  # each bad record once per bad element, nothing else

            # The trainer reads the same storm into its cache: it skips what the worker refused.
            refresh = await refresh_cache(
                TrainerConfig.from_settings(settings), kafka, open_cache(TrainerConfig.from_settings(settings))
            )
            catalog_tombstones = sum(1 for name, value in KNOWN_POISON + values if name == "catalog" and value is None)
            assert refresh.skipped == total + catalog_tombstones and refresh.events >= 60
        finally:
            await producer.stop()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
