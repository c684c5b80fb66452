"""The demo's report: what was reached and when."""

from __future__ import annotations

import json

from foundation.settings import Settings
from streamrec.demo import Milestones, Sample, write_report


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
