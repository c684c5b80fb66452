"""The stream worker on a real broker: exact features, dead letters, rebalancing, restarts."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from pydantic import SecretStr

import streamrec.streams.worker
from streamrec.broker import port_open
from streamrec.foundation.attribution import Arm, ArmCounts
from streamrec.foundation.codec import decode, encode
from streamrec.foundation.features import merge_item_stats
from streamrec.foundation.kafka import KafkaConnection, admin_client
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics
from streamrec.processes import run_worker
from streamrec.shop.producer import ShopProducer
from streamrec.streams.tables import ChangelogTable, read_changelog
from tests.conftest import free_port
from tests.integration.helpers import RunningWorker, read_topic, run_scenario, until


@pytest.fixture(params=["batch", "faust"])
def settings(request, settings: Settings) -> Settings:
    """Every test here runs on both engines."""
    return settings.derive(engine=request.param)


GOOD = {"type": "click", "user_id": "u1", "item_id": "i1", "ts": 100.0}
ANSWER = Arm("home", "spring", "b")
MALFORMED = [  # (key, value, the reason's telling part)
    (b"u1", b"\xc1\xc1", "not valid msgpack"),
    (b"u1", b"{oops", "not valid JSON"),
    (b"u1", None, "tombstone"),
    (b"u1", encode("just a string"), "must be a map"),
    (b"u1", encode({**GOOD, "event_id": "m1", "type": "view"}), "'type' must be one of"),
    (b"u1", encode({**GOOD, "event_id": "m2", "ts": "noon"}), "'ts' must be a number"),
    (b"u1", encode({**GOOD, "event_id": "m3", "user_id": "u" * 300}), "300 characters long"),
    (b"u1", encode({**GOOD, "user_id": "u1"}), "missing required field 'event_id'"),
    (b"u1", encode([GOOD] * 1001), "1001 elements, the limit is 1000"),
    (b"u1", b"{" + b" " * 1_048_600 + b"}", "the limit is 1048576"),
]


async def send_raw(bootstrap: KafkaConnection, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap.bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def shop_traffic(bootstrap: KafkaConnection, settings: Settings) -> None:
    """Two producers, a catalog, duplicates, a JSON event, a mixed batch, a mis-keyed event."""
    topics = Topics.from_settings(settings.kafka)
    async with ShopProducer(bootstrap, settings) as first, ShopProducer(bootstrap, settings) as second:
        await first.upsert_item("i1", "Red mug", "kitchen")
        await first.upsert_item("i2", "Garden hose", "garden")
        await first.flush()
        for n in range(10):
            answered = ANSWER.new_id()  # the clicks follow an answer
            await first.click("u1", "i1", event_id=f"c{n}", ts=1000.0 + n, recommendation_id=answered)
            await second.click("u1", "i1", event_id=f"c{n}", ts=1000.0 + n, recommendation_id=answered)  # again
        await second.purchase("u1", "i1", event_id="p1", ts=1100.0, price=5.0, recommendation_id=ANSWER.new_id())
        await first.click("u2", "i2", event_id="c100", ts=1200.0)
    json_event = json.dumps({**GOOD, "event_id": "j1", "user_id": "u2", "item_id": "i2", "ts": 1201.0}).encode()
    batch = encode([{**GOOD, "event_id": "b1", "user_id": "u3", "ts": 1300.0}, {"type": "click"}])
    await send_raw(
        bootstrap,
        topics.clicks,
        [
            (b"u2", json_event),
            (b"u3", batch),
            (b"not-u4", encode({**GOOD, "event_id": "r1", "user_id": "u4", "ts": 1400.0})),
            *[(key, value) for key, value, _ in MALFORMED],
        ],
    )


def test_features_dead_letters_and_http(kafka, settings):
    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(run_worker(settings, kafka, stop))
        await until(
            lambda: port_open("127.0.0.1", settings.worker_port) or running.done(), what="the worker's HTTP port"
        )
        if running.done():
            running.result()  # the worker failed to start: show why
        await shop_traffic(kafka, settings)
        url = f"http://127.0.0.1:{settings.worker_port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:

            async def clicks_of(user: str) -> int | None:
                if running.done():
                    running.result()  # the worker stopped: show why
                answer = await http.get(f"/users/{user}")
                return answer.json()["clicks"] if answer.status_code == 200 else None

            for user, clicks in (("u1", 10), ("u2", 2), ("u3", 1), ("u4", 1)):
                for _ in range(600):
                    if await clicks_of(user) == clicks:
                        break
                    await asyncio.sleep(0.1)
            u1 = (await http.get("/users/u1")).json()
            assert (u1["clicks"], u1["purchases"], u1["purchased"]) == (10, 1, ["i1"])
            assert [r["ts"] for r in u1["recent"]][:2] == [1100.0, 1009.0]  # newest first
            assert list(u1["category_affinity"]) == ["kitchen"]
            assert (await http.get("/users/u2")).json()["clicks"] == 2  # one of them JSON
            assert (await http.get("/users/u3")).json()["recent"][0]["item_id"] == "i1"
            assert (await http.get("/users/u4")).json()["clicks"] == 1  # re-keyed by user
            missing = await http.get("/users/nobody")
            assert missing.status_code == 404 and "unknown user" in missing.json()["detail"]
            assert (await http.get("/users/" + "x" * 300)).status_code == 422
            # Counters count at the commit, after the fold (on Apache Kafka once the group's coordinator is up).
            duplicates = 'streamrec_worker_events_total{outcome="duplicate"} 10.0'
            for _ in range(600):
                if duplicates in (await http.get("/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            assert duplicates in (await http.get("/metrics")).text
        stop.set()
        worker = (await running).worker
        assert worker.status.dead_letters == len(MALFORMED) + 1  # + the bad element of the batch

        topics = Topics.from_settings(settings.kafka)
        dead = await read_topic(kafka, topics.deadletter, settings.partitions)
        reasons = [dict(r.headers)["reason"].decode() for r in dead if "element" not in dict(r.headers)]
        for _, _, reason in MALFORMED:
            assert sum(reason in r for r in reasons) == 1, (reason, reasons)
        huge = [dict(r.headers) for r in dead if "truncated_from" in dict(r.headers)]
        assert len(huge) == 1 and int(huge[0]["truncated_from"]) > 1_048_576
        element = [dict(r.headers) for r in dead if "element" in dict(r.headers)]
        assert element[0]["element"] == b"1" and b"missing required field 'event_id'" in element[0]["reason"]
        for record in dead:
            headers = dict(record.headers)
            assert headers["source_topic"].decode() == topics.clicks
            assert int(headers["source_offset"]) >= 0 and int(headers["source_partition"]) >= 0

        stats = [s for _, key, s in worker.items.items() if key == "i1"]
        merged = merge_item_stats(stats)
        assert (merged.clicks, merged.purchases) == (12, 1)  # u1's ten, u3's and u4's one; u1's purchase
        written = await read_changelog(kafka, topics.arm_counts_changelog, range(settings.partitions))
        (arm,) = [ArmCounts.from_wire(decode(raw)) for rows in written.values() for raw in rows.values()]
        assert arm == ArmCounts(clicks=10, purchases=1, revenue=5.0)  # u1's, once each

    run_scenario(scenario)


async def produce_round(bootstrap: KafkaConnection, settings: Settings, round_no: int, users: int = 40) -> None:
    async with ShopProducer(bootstrap, settings) as producer:
        for user in range(users):
            for n in range(3):
                await producer.click(f"u{user}", f"i{n}", event_id=f"r{round_no}-u{user}-{n}", ts=1000.0 * round_no + n)


def test_joining_crashing_and_restarting_workers_lose_nothing(kafka, settings):
    """Round 1 with one worker; a second joins for round 2; the first crashes
    (no flush, no commit) after round 3; the second stops cleanly, and a
    fresh worker restores from the changelog, meets none of those events
    again, and takes round 4. Every user ends with exactly 12 clicks."""
    users = 40
    second_settings = settings.derive(worker_port=free_port())

    def total(workers: list[RunningWorker]) -> int:
        return sum(w.worker.status.events for w in workers)

    async def scenario() -> None:
        first = await RunningWorker(settings, kafka).start()
        await produce_round(kafka, settings, 1, users)
        await until(lambda: total([first]) == 3 * users, what="round 1")

        second = await RunningWorker(second_settings, kafka).start()
        await until(
            lambda: (
                len(first.worker.users.partitions) == 2
                and len(second.worker.users.partitions) == 2
                and first.worker.status.ready
                and second.worker.ready_partitions
            ),
            what="rebalance to two workers",
        )
        await produce_round(kafka, settings, 2, users)
        await until(
            lambda: (
                all(v == 6 for v in clicks_held(first, second).values()) and len(clicks_held(first, second)) == users
            ),
            what="round 2",
        )

        # A crash: first's unflushed work is lost and its partitions are redelivered.
        first.hold_commits()
        await produce_round(kafka, settings, 3, users)
        await asyncio.sleep(1.0)
        await first.crash()
        await until(lambda: len(second.worker.ready_partitions) == 4, what="takeover by the second worker")
        await until(
            lambda: all(v == 9 for v in clicks_held(second).values()) and len(clicks_held(second)) == users,
            what="round 3 after the crash",
        )

        await second.stop()
        third = await RunningWorker(settings, kafka).start()
        await until(lambda: len(third.worker.ready_partitions) == 4, what="restart restoring from the changelog")
        await asyncio.sleep(1.0)  # time for any event the clean stop left uncommitted to show
        assert third.worker.status.duplicates == 0
        # Checked before round 4: a rebalance during it may hand the third its own
        # uncommitted events again, which the exact counts below show absorbed.
        await produce_round(kafka, settings, 4, users)
        await until(
            lambda: all(v == 12 for v in clicks_held(third).values()) and len(clicks_held(third)) == users,
            timeout_s=60,
            what="round 4",
        )
        await third.stop()

    run_scenario(scenario)


def test_a_clean_stop_commits_everything_processed(kafka, settings):
    """Commits only at close (the timed ones an hour apart): a restarted
    worker must meet none of the events again."""
    settings = settings.derive(commit_interval_s=3600)

    async def scenario() -> None:
        first = await RunningWorker(settings, kafka).start()
        await produce_round(kafka, settings, 1)
        await until(lambda: sorted(clicks_held(first).values()) == [3] * 40, what="round 1")
        await first.stop()
        second = await RunningWorker(settings, kafka).start()
        await until(lambda: len(second.worker.ready_partitions) == 4, what="the restart's restore")
        await produce_round(kafka, settings, 2)
        await until(lambda: sorted(clicks_held(second).values()) == [6] * 40, what="round 2")
        await asyncio.sleep(1.0)  # time for any redelivered event to show
        await second.stop()  # (the batch engine counts at its commit)
        assert (second.worker.status.events, second.worker.status.duplicates) == (120, 0)

    run_scenario(scenario)


def clicks_held(*workers: RunningWorker) -> dict[str, int]:
    found: dict[str, int] = {}
    for w in workers:
        for _, user_id, user in w.worker.users.items():
            found[user_id] = user.clicks
    return found


def test_a_failed_changelog_write_then_a_clean_close_loses_no_update(kafka, settings, monkeypatch):
    """The changelog write of a commit fails (after 2 s, as a broker timing
    out would) while the worker goes on folding newer events; the worker is then
    closed cleanly. A fresh worker restoring from the changelog and resuming
    from the committed offsets must hold every event exactly once."""
    if settings.engine == "faust":
        pytest.skip("patches the batch engine's producer; the faust engine's case is the test below")
    changelog = Topics.from_settings(settings.kafka).user_features_changelog
    failing = {"on": True, "tried": False}
    real_start = streamrec.streams.worker.start_producer

    async def start_producer(bootstrap: KafkaConnection, **options):
        producer = await real_start(bootstrap, **options)
        real_send = producer.send_batch

        async def send_batch(batch, topic: str, *, partition: int):
            if topic == changelog and failing["on"]:
                failing["tried"] = True
                failed = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_later(2.0, failed.set_exception, KafkaTimeoutError())
                return failed
            return await real_send(batch, topic, partition=partition)

        producer.send_batch = send_batch
        return producer

    monkeypatch.setattr(streamrec.streams.worker, "start_producer", start_producer)
    users = 40

    async def scenario() -> None:
        first = await RunningWorker(settings, kafka).start()
        await until(lambda: first.worker.status.ready, what="the first worker's partitions")
        async with ShopProducer(kafka, settings) as producer:
            for half in (range(users), range(users, 2 * users)):
                for user in half:
                    for n in range(6):
                        await producer.click(f"u{user}", f"i{n}", event_id=f"f-u{user}-{n}", ts=1000.0 + n)
                await producer.flush()
                await until(lambda half=half: all(clicks_held(first).get(f"u{u}") == 6 for u in half), 10, "a half")
                # The first half's commit is under way (and will fail) before the second half is sent.
                await until(lambda: failing["tried"], 10, "a changelog write")
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(first.task, 30)
        failing["on"] = False
        await first.worker.close()  # a clean close after the failure

        second = await RunningWorker(settings, kafka).start()
        await until(
            lambda: len(clicks_held(second)) == 2 * users and all(v == 6 for v in clicks_held(second).values()),
            timeout_s=30,
            what="every user's six clicks after the restart",
        )
        await asyncio.sleep(0.5)
        assert all(v == 6 for v in clicks_held(second).values())
        await second.stop()

    run_scenario(scenario)


def test_faust_a_failed_changelog_write_fails_the_commit_and_nothing_is_lost(kafka, settings, monkeypatch):
    """The faust engine's changelog batches fail (after 1 s, as a broker
    timing out would): the next commit must fail with them and stop the app,
    and a fresh worker must hold every event exactly once."""
    if settings.engine != "faust":
        pytest.skip("the faust engine's case of the test above")
    failing = {"on": True, "tried": False}
    real_write = ChangelogTable.write

    async def write(self, producer, taken) -> int:
        if failing["on"]:
            failing["tried"] = True
            await asyncio.sleep(1.0)
            raise KafkaTimeoutError()
        return await real_write(self, producer, taken)

    monkeypatch.setattr(ChangelogTable, "write", write)
    users = 40

    async def scenario() -> None:
        first = await RunningWorker(settings, kafka).start()
        await until(lambda: first.worker.status.ready, what="the first worker's partitions")
        await produce_round(kafka, settings, 1, users)
        await until(lambda: failing["tried"], 30, "a changelog write")
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(first.task, 30)
        RunningWorker.unfinished.remove(first)
        failing["on"] = False
        await first.worker.close()

        second = await RunningWorker(settings, kafka).start()
        await until(
            lambda: sorted(clicks_held(second).values()) == [3] * users,
            timeout_s=30,
            what="every user's three clicks after the restart",
        )
        await asyncio.sleep(0.5)
        assert sorted(clicks_held(second).values()) == [3] * users
        await second.stop()

    run_scenario(scenario)


def test_a_user_is_answered_by_any_worker_whatever_characters_the_id_holds(kafka, settings):
    """GET /users/{id} on a worker that does not own the user is forwarded to
    the owner, with the worker's own admin key; ids with '?', '#', '%' or
    spaces must reach it as the same id."""
    settings = settings.derive(api_keys=SecretStr("reader"), admin_api_keys=SecretStr("admin"))
    second_settings = settings.derive(worker_port=free_port())
    odd_ids = ["a?b=1", "c#d", "e%2Ff", "g h", "Zoë"]

    async def scenario() -> None:
        stop = asyncio.Event()
        running = [asyncio.create_task(run_worker(s, kafka, stop)) for s in (settings, second_settings)]
        try:
            async with ShopProducer(kafka, settings) as producer:
                for n, user_id in enumerate(odd_ids * 20):
                    await producer.click(user_id, "i1", event_id=f"o{n}", ts=1000.0 + n)
            urls = [f"http://127.0.0.1:{s.worker_port}" for s in (settings, second_settings)]
            async with httpx.AsyncClient(timeout=5) as http:

                async def clicks(url: str, user_id: str) -> int | None:
                    answer = await http.get(f"{url}/users/{quote(user_id, safe='')}", headers={"X-API-Key": "admin"})
                    return answer.json().get("clicks") if answer.status_code == 200 else None

                ports = (settings.worker_port, second_settings.worker_port)
                await until(lambda: all(port_open("127.0.0.1", port) for port in ports), 60, "both workers' ports")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    found = [await clicks(url, user_id) for url in urls for user_id in odd_ids]
                    if found == [20] * len(found):
                        break
                    await asyncio.sleep(0.3)
                assert found == [20] * len(found), found  # each id, from either worker
                reader = await http.get(f"{urls[0]}/users/c%23d", headers={"X-API-Key": "reader"})
                assert reader.status_code == 403 and "admin key" in reader.json()["detail"]
                assert (await http.get(f"{urls[0]}/users/c%23d")).status_code == 401
        finally:
            stop.set()
            await asyncio.gather(*running, return_exceptions=True)

    run_scenario(scenario)


def test_a_stopped_worker_leaves_its_group_at_once(kafka, settings):
    """A clean stop leaves the consumer group, on tansu too (its first
    generation is 0, from which aiokafka would not leave): a restarted worker
    gets the partitions without waiting for the old member's session to time out."""

    async def scenario() -> None:
        worker = await RunningWorker(settings, kafka).start()
        await until(lambda: len(worker.worker.ready_partitions) == 4, what="the first assignment")
        group = worker.worker.topics.worker_group
        assert len(await group_members(kafka, group)) == 1
        await worker.stop()
        assert await group_members(kafka, group) == []

    run_scenario(scenario)


async def group_members(kafka: KafkaConnection, group: str) -> list:
    """The group's members, as the broker describes them (DescribeGroups)."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [(_error, _group, _state, _protocol_type, _protocol, members)] = response.groups
        return list(members)
    finally:
        await admin.close()
