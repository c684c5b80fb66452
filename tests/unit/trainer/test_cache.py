"""The trainer's on-disk interaction cache: segments, offsets, the data window."""

from __future__ import annotations

import time

from streamrec.foundation.schema import Event, Item
from streamrec.trainer.cache import InteractionCache


def _events(start: int, n: int) -> list[Event]:
    return [Event(f"e{k}", "click", f"u{k % 7}", f"i{k % 5}", 1000.0 + k) for k in range(start, start + n)]


def test_appended_events_and_offsets_survive_reopening(tmp_path):
    cache = InteractionCache.open(tmp_path, max_events=1000)
    cache.append(_events(0, 10), [Item("i1", "one", "c")], {"clicks": {0: 10}})
    cache.append(_events(10, 5), [], {"clicks": {0: 15}, "purchases": {1: 3}})
    again = InteractionCache.open(tmp_path, max_events=1000)
    assert [e.event_id for e in again.events] == [f"e{k}" for k in range(15)]
    assert again.offsets == {"clicks": {0: 15}, "purchases": {1: 3}}
    assert again.items["i1"].title == "one"


def test_the_window_keeps_the_newest_events_in_one_base_segment(tmp_path):
    cache = InteractionCache.open(tmp_path, max_events=12)
    cache.append(_events(5, 10), [], {"clicks": {0: 10}})
    cache.append(_events(0, 5), [], {"clicks": {0: 15}})  # older events arriving late
    assert len(list(tmp_path.glob("segment-*"))) == 1
    again = InteractionCache.open(tmp_path, max_events=12)
    assert [e.ts for e in again.events] == [1000.0 + k for k in range(3, 15)]
    assert again.offsets == {"clicks": {0: 15}}


def test_a_half_written_segment_is_ignored(tmp_path):
    cache = InteractionCache.open(tmp_path, max_events=100)
    cache.append(_events(0, 3), [], {"clicks": {0: 3}})
    (tmp_path / ".segment-00000002.msgpack.tmp").write_bytes(b"\x85garbage")  # what a crashed write leaves
    assert list(tmp_path.glob("*.tmp"))  # (the check below would see it)
    again = InteractionCache.open(tmp_path, max_events=100)
    assert len(again.events) == 3 and again.offsets == {"clicks": {0: 3}}
    assert not list(tmp_path.glob("*.tmp"))


def test_forgetting_a_user_rewrites_the_cache_without_their_events(tmp_path):
    cache = InteractionCache.open(tmp_path, max_events=100)
    cache.append(_events(0, 14), [], {"clicks": {0: 14}})
    cache.append(_events(14, 7), [], {"clicks": {0: 21}, "control": {0: 1}}, forget={"u3"})
    assert [path.name for path in tmp_path.iterdir()] == ["segment-00000002.msgpack"]  # one atomic base segment
    again = InteractionCache.open(tmp_path, max_events=100)
    assert len(again.events) == 18 and "u3" not in {e.user_id for e in again.events}
    assert again.offsets == {"clicks": {0: 21}, "control": {0: 1}}
    assert b"u3" not in (tmp_path / "segment-00000002.msgpack").read_bytes()


def test_events_older_than_the_maximum_age_are_deleted(tmp_path):
    now = time.time()
    old = [Event("old", "click", "u1", "i1", now - 10 * 86_400)]
    recent = [Event("new", "click", "u1", "i1", now - 3600)]
    cache = InteractionCache.open(tmp_path, max_events=100, max_age_s=7 * 86_400)
    cache.append(old + recent, [], {"clicks": {0: 2}})
    assert [e.event_id for e in InteractionCache.open(tmp_path, max_events=100).events] == ["new"]
