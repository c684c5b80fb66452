"""The worker's queries, without a broker."""

from __future__ import annotations

from streamrec.foundation.features import FeatureConfig, ItemStats, UserFeatures, apply_event, apply_item_counts
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.streams.state import WorkerConfig
from streamrec.streams.worker import StreamWorker


def test_a_workers_tuner_samples_copies_of_its_own_users():
    worker = StreamWorker(WorkerConfig.from_settings(Settings()), "127.0.0.1:9")  # never started: no broker needed
    rows, _ = worker.users.for_update(0)
    for u in range(30):
        rows[f"u{u}"] = user = UserFeatures(f"u{u}")
        apply_event(user, Event(f"e{u}", "click", user.user_id, "i1", 1000.0), "c1", FeatureConfig())
    picked = worker.sample_users(10)
    assert len(picked) == 10 and len({u.user_id for u in picked}) == 10
    assert all(u is not rows[u.user_id] and u.recent_items == ["i1"] for u in picked)
    assert len(worker.sample_users(100)) == 30


def test_item_statistics_are_read_merged_and_ranked_in_event_time():
    worker = StreamWorker(
        WorkerConfig.from_settings(Settings(popularity_bucket_s=3600, popularity_buckets=24)), "127.0.0.1:9"
    )
    for partition, (item_id, clicks, ts) in enumerate([("mug", 3, 7200.0), ("mug", 2, 9000.0), ("pan", 4, 100_000.0)]):
        rows, _ = worker.items.for_update(partition)
        rows[item_id] = stats = ItemStats(item_id)
        apply_item_counts(stats, int(ts // 3600) * 3600, clicks, 0, ts, worker.config)
    assert (worker.item_stats("mug").clicks, worker.item_stats("nothing")) == (5, None)
    # "Now" is the newest event counted (100,000 s): the mug's clicks of hour 2 are out of the 24 h window.
    assert worker.popular_items(5) == [("pan", 4.0)]
    assert worker.popular_items(5, now=9000.0) == [("mug", 5.0), ("pan", 4.0)]
