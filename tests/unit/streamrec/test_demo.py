"""The demo's report: what was reached and when."""

from __future__ import annotations

import dataclasses
import json

from streamrec.demo import Milestones, Sample, freshness_of_models, latency_drift, write_report
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import DataWindow, ModelStore
from tests.versions import publish_random_version


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
    assert (
        "all three within five minutes: **no**"
        in write_report(late, Settings(data_dir=tmp_path), rate=500.0).read_text()
    )


def test_each_served_model_says_how_long_after_its_events_it_served(tmp_path):
    settings = Settings(data_dir=tmp_path)
    store = ModelStore.in_data_dir(settings.data_dir)
    items = [Item(f"i{n}", f"item {n}", "c") for n in range(20)]
    served = {}
    for first, last, at in ((1000.0, 1100.0, 1160.0), (1000.0, 1250.0, 1290.0)):
        version = publish_random_version(store, items).version
        window = DataWindow(events=10, first_ts=first, last_ts=last, items=20, train_examples=5, test_examples=1)
        manifest = dataclasses.replace(store.load_manifest(version), data_window=window)
        (store.root / version / "manifest.json").write_bytes(manifest.to_json())
        served[version] = at
    rows = freshness_of_models(Milestones(served_at={**served, "20200101T000000Z": 900.0}), settings)  # one pruned
    assert [(r["newest_event_s"], r["oldest_new_event_s"], r["mean_s"]) for r in rows] == [
        (60.0, 160.0, 110.0),  # the first version: every event of its window was new
        (40.0, 190.0, 115.0),  # the second: the events after the first version's newest
    ]


def test_the_dashboard_says_nothing_was_published_rather_than_a_latency_of_zero(tmp_path):
    from rich.console import Console

    from streamrec.demo import dashboard
    from streamrec.foundation.kafka import KafkaConnection
    from streamrec.processes import WorkerProcess

    settings = Settings(data_dir=tmp_path)
    process = WorkerProcess(settings, KafkaConnection("127.0.0.1:9"))
    console = Console(record=True, width=160)
    console.print(dashboard(process, Sample(3, 0, 0, 0, 0, 0, None), (None, None, None), settings, [], "starting"))
    screen = console.export_text()
    assert "none yet" in screen and "0.0 ms" not in screen and "joining the group" in screen


def test_the_report_compares_the_last_minutes_p99_with_the_first_after_the_model(tmp_path):
    milestones = Milestones(trained_model=100.0, recommendation_published=5.0, model_recommendation=110.0)
    for minute in range(0, 26):  # minutes 2..25 after the model; the last ten with a slower tail
        milestones.latencies_by_minute[minute] = [20.0] * 98 + [200.0 if minute >= 16 else 100.0] * 2
    drift = latency_drift(milestones)
    assert drift["drift_window_min"] == 10 and drift["p99_first_ms"] == 100.0
    assert drift["p99_last_over_first"] == 2.0  # the last ten minutes' p99 is twice the first's
    milestones.samples = [Sample(t, 500.0, 450.0, 20.0, 80.0, 3, "v1") for t in range(1, 60)]
    text = write_report(milestones, Settings(data_dir=tmp_path), rate=500.0).read_text()
    assert "of the last 10 200.0 ms: x 2.0" in text and "| 25 | 100 | 20.0 |" in text
    assert latency_drift(Milestones(model_recommendation=None)) == {}
