"""The console's workers table: who is asked, who is trusted, what is kept of a hostile answer."""

from __future__ import annotations

import asyncio
import functools

import httpx
from pydantic import SecretStr

from streamrec.foundation.codec import encode
from streamrec.foundation.http import Access
from streamrec.foundation.settings import Settings
from streamrec.foundation.topics import Topics
from streamrec.serving import pulse as pulse_module
from streamrec.serving.pulse import Pulse, ServingTap

PUBLISHER = {
    "model_version": "v1",
    "backlog_users": 3,
    "published": 10,
    "without_model": 0,
    "errors": 1,
    "p50_ms": 2.0,
    "p99_ms": 9.5,
}
ANSWERS = {
    "w1": {"ready": True, "lag": 4, "partitions": [0, 1], "publisher": PUBLISHER, "peers": [["http://w2:3", ""]]},
    "w2": {
        "ready": True,
        "lag": 0,
        "partitions": [2],
        "peers": "not a list of pairs",
        "publisher": {"model_version": "x" * 10_000, "backlog_users": "abc", "errors": True},
    },
}


def _answer(request: httpx.Request) -> httpx.Response:
    host = request.url.host
    if host not in ANSWERS:
        raise httpx.ConnectError("refused", request=request)
    return httpx.Response(200, json=ANSWERS[host])


def test_workers_are_found_through_the_group_and_their_peers_and_hostile_answers_are_bounded(monkeypatch):
    monkeypatch.setattr(
        pulse_module.httpx,
        "AsyncClient",
        functools.partial(httpx.AsyncClient, transport=httpx.MockTransport(_answer)),
    )

    async def members(admin, group: str) -> list[tuple[str, str]]:
        return [("http://w1:1", ""), ("http://w9:9/elsewhere", "")]

    access = Access(SecretStr(""), SecretStr(""))
    pulse = Pulse(None, Topics.from_settings(Settings().kafka), None, access, members, ("http://local:2", ""))
    pulse.workers = asyncio.run(pulse._workers(admin=None))
    by_url = {w["url"]: w for w in pulse.workers}

    assert set(by_url) == {"http://w1:1", "http://w9:9/elsewhere", "http://w2:3"}  # the silent local one left out
    assert by_url["http://w1:1"]["publisher"] == PUBLISHER and "peers" not in by_url["http://w1:1"]
    assert by_url["http://w9:9/elsewhere"]["error"] == "advertised a URL this server does not trust"
    assert "no status" in by_url["http://w2:3"]["error"]  # peers that are not pairs: the answer is refused
    assert pulse.overview()["publisher_backlog"] == 3 and pulse.overview()["publisher_errors"] == 1


def test_a_publisher_answer_keeps_only_numbers_and_a_short_version():
    view = pulse_module._publisher_view(ANSWERS["w2"]["publisher"])
    assert len(view["model_version"]) == 64 and view["backlog_users"] is None and view["errors"] is None


def test_server_heartbeats_keep_the_newest_version_of_a_bounded_number_of_servers(monkeypatch):
    monkeypatch.setattr(pulse_module, "SERVERS_KEPT", 3)
    tap = ServingTap("recs.serving")
    now = 1_000.0
    tap.apply(b"api-0:8000", encode({"version": "v1", "ts": now - 5}))
    tap.apply(b"api-0:8000", encode({"version": "v2", "ts": now - 1}))  # the newest wins
    tap.apply(b"api-1:8000", encode({"version": "x" * 500, "ts": now}))
    tap.apply(b"gone:8000", encode({"version": "v1", "ts": now - 3600}))  # silent for an hour: not listed
    tap.apply(b"one-too-many:8000", encode({"version": "v1", "ts": now}))
    for hostile in (b"\xc1", encode({"version": "v1"}), encode([1, 2]), encode({"version": "v", "ts": "soon"})):
        tap.apply(b"api-2:8000", hostile)
    tap.apply(None, encode({"version": "v1", "ts": now}))
    heard = tap.heard(now)
    assert [(s["server"], s["version"][:2], s["seen_s_ago"]) for s in heard] == [
        ("api-0:8000", "v2", 1.0),
        ("api-1:8000", "xx", 0.0),
    ]
    assert len(heard[1]["version"]) == 64
    tap.apply(b"api-1:8000", None)  # a tombstone forgets it
    assert [s["server"] for s in tap.heard(now)] == ["api-0:8000"]
