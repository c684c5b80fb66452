"""The publisher's coalescing (no broker needed) and the demo's report."""

from __future__ import annotations

import json
from types import SimpleNamespace

from index.publisher import RecommendationPublisher, _sample_rows
from streamrec.demo import Milestones, Sample, write_report
from streamrec.settings import Settings
from streams.features import FeatureConfig, UserFeatures, apply_event
from streams.schema import Event
from streams.tables import ChangelogTable


def _publisher(current: object | None = "an index") -> RecommendationPublisher:
    live = SimpleNamespace(current=current)
    return RecommendationPublisher(live, lambda partition, user_id: None, producer=None, topic="recs", interval_s=0.5)


def test_a_burst_gives_one_publish_now_and_one_on_the_newest_state_later():
    publisher = _publisher()
    publisher.note({"u1": (0, "e1", 1.0), "u2": (1, "e2", 1.0)})
    assert sorted(publisher.due(now=100.0)) == ["u1", "u2"]
    publisher._waiting.clear()
    publisher._last_publish.update({"u1": 100.0, "u2": 100.0})
    publisher.note({"u1": (0, "e3", 2.0)})
    publisher.note({"u1": (0, "e4", 3.0)})  # folded into the same pending publish
    assert publisher.status.coalesced == 1
    assert publisher.due(now=100.2) == []  # within the interval: wait
    assert publisher.due(now=100.5) == ["u1"] and publisher._waiting["u1"] == (0, "e4", 3.0)


def test_without_a_model_changes_are_counted_not_kept():
    publisher = _publisher(current=None)
    publisher.note({"u1": (0, "e1", 1.0)})
    assert publisher.waiting == 0 and publisher.status.without_model == 1


def test_latency_percentiles_of_the_last_publishes():
    publisher = _publisher()
    publisher.status.latencies_ms.extend([1000.0] * 10 + [5.0] * 100)
    assert publisher.status.percentiles(last=100) == (5.0, 5.0)
    assert publisher.status.percentiles()[1] > 5.0


def test_the_demo_report_says_what_was_reached_and_when(tmp_path):
    milestones = Milestones(trained_model=70.0, api_serving=72.0, recommendation_published=73.0)
    milestones.samples = [Sample(t, 500.0, 450.0, 20.0, 80.0, 3, "v1" if t > 70 else None) for t in range(1, 120)]
    report = write_report(milestones, Settings(data_dir=tmp_path), rate=500.0)
    text = report.read_text()
    assert "all three within five minutes: yes" in text and "trained model after: 70 s" in text
    assert (tmp_path / "reports" / "demo.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "reports" / "demo.json").read_text())
    assert summary["model_versions"] == ["v1"] and summary["median_p99_ms"] == 80.0
    late = Milestones(trained_model=400.0, api_serving=72.0, recommendation_published=None, samples=milestones.samples)
    assert "all three within five minutes: **no**" in write_report(late, Settings(data_dir=tmp_path), rate=500.0).read_text()


def test_a_workers_tuner_samples_copies_of_its_own_users():
    table = ChangelogTable("user-features", "changelog", UserFeatures.from_wire, UserFeatures.to_wire)
    rows, _ = table.for_update(0)
    for u in range(30):
        rows[f"u{u}"] = user = UserFeatures(f"u{u}")
        apply_event(user, Event(f"e{u}", "click", user.user_id, "i1", 1000.0), "c1", FeatureConfig())
    picked = _sample_rows(SimpleNamespace(users=table), 10)
    assert len(picked) == 10 and len({u.user_id for u in picked}) == 10
    assert all(u is not rows[u.user_id] and u.recent_items == ["i1"] for u in picked)
    assert len(_sample_rows(SimpleNamespace(users=table), 100)) == 30
