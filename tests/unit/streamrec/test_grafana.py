"""The Grafana dashboard under deploy/ queries what the processes export, and
shows every metric they export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from streamrec.serving.api import ApiMetrics
from streamrec.serving.publisher import RecommendationPublisher, export_metrics
from streamrec.streams.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "streamrec.json"
SERIES_SUFFIX = re.compile(r"_(total|bucket|count|sum)$")


def _exported() -> set[str]:
    publisher = RecommendationPublisher(lambda report: None, lambda partition, user_id: None, None, "recs", None)
    publisher_registry = CollectorRegistry()
    export_metrics(publisher, publisher_registry)
    registries = [WorkerMetrics().registry, ApiMetrics(live=None).registry, publisher_registry]
    return {family.name for registry in registries for family in registry.collect()}


def _queried() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    return {SERIES_SUFFIX.sub("", name) for expr in expressions for name in re.findall(r"streamrec_\w+", expr)}


def test_the_dashboard_queries_only_exported_metrics_and_every_one_of_them():
    exported, queried = _exported(), _queried()
    assert queried - exported == set(), "the dashboard queries metrics no process exports"
    assert exported - queried == set(), "metrics exported but on no panel of the dashboard"


def test_every_panel_has_a_title_a_place_and_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert {"datasource"} <= {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["gridPos"]["w"] > 0 and panel["datasource"]["uid"] == "${datasource}"
