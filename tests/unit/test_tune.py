"""The cost model on real indexes: measurements, the choice, the settings it
prints, start-up tuning, and `streamrec bench index`'s JSON contract."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from index.bench import embedding_like
from index.kinds import IndexSpec
from index.live import LiveModel, index_spec
from index.tune import Measurement, Target, choose, exact_neighbours, measure, settings_for
from streamrec.cli import app
from streamrec.plots import tuning_map
from streamrec.settings import Settings
from streams.features import FeatureConfig, UserFeatures, apply_event
from streams.schema import Event, Item
from tests.conftest import free_port
from tests.versions import publish_random_version
from trainer.store import ModelStore

VECTORS = embedding_like(3000, 16)
QUERIES = embedding_like(100, 16, seed=1)
TRUTH = exact_neighbours(VECTORS, QUERIES, 10)
ITEMS = [Item(f"i{n}", f"item {n}", f"c{n % 5}") for n in range(400)]


def _m(kind: str, recall: float, p99: float, size: float) -> Measurement:
    return Measurement(IndexSpec(kind), 1000, recall, p99 / 2, p99, p99 / 10, size, 0.1)


def test_the_cheapest_configuration_meeting_the_target_is_chosen():
    measured = [_m("flat", 1.0, 5.0, 256), _m("hnsw", 0.97, 0.2, 500), _m("ivf_pq", 0.86, 0.1, 30), _m("sq8", 0.99, 1.0, 64)]
    assert choose(measured, Target(0.95)).spec.kind == "hnsw"  # fastest with recall >= 0.95
    assert choose(measured, Target(0.95, prefer="memory")).spec.kind == "sq8"
    assert choose(measured, Target(0.85, bytes_per_item=32)).spec.kind == "ivf_pq"
    assert choose(measured, Target(0.95, p99_ms=0.5, bytes_per_item=100)) is None


def test_search_knobs_are_swept_on_one_build_and_recall_is_against_exact():
    measured = measure(VECTORS, QUERIES, TRUTH, [IndexSpec("flat"), IndexSpec("hnsw", hnsw_m=8), IndexSpec("ivf_flat")])
    flat = [m for m in measured if m.spec.kind == "flat"]
    hnsw = sorted((m for m in measured if m.spec.kind == "hnsw"), key=lambda m: m.spec.ef_search)
    ivf = sorted((m for m in measured if m.spec.kind == "ivf_flat"), key=lambda m: m.spec.nprobe)
    assert len(flat) == 1 and flat[0].recall_at_k == 1.0 and round(flat[0].bytes_per_item) == 16 * 4
    assert len(hnsw) == 4 and len({m.build_s for m in hnsw}) == 1  # one build, four efSearch
    assert hnsw[-1].recall_at_k >= hnsw[0].recall_at_k and ivf[-1].recall_at_k >= ivf[0].recall_at_k
    assert all(0 < m.p50_ms <= m.p99_ms for m in measured)


def test_printed_settings_give_back_the_chosen_spec(monkeypatch):
    chosen = IndexSpec("opq_ivf_pq", nlist=100, nprobe=8, pq_m=16, pq_bits=6)
    for name, value in settings_for(chosen).items():
        monkeypatch.setenv(name, value)
    assert index_spec(Settings()) == chosen


def test_the_tuning_plot_is_written(tmp_path):
    measured = [_m("flat", 1.0, 5.0, 256), _m("hnsw", 0.97, 0.2, 500)]
    path = tuning_map(tmp_path / "tune.png", {"faiss": measured}, measured[1], "test")
    assert path.read_bytes()[:4] == b"\x89PNG"


def _users(n: int) -> list[UserFeatures]:
    users = []
    for u in range(n):
        user = UserFeatures(f"u{u}")
        for e in range(3):
            item = ITEMS[(u * 7 + e) % len(ITEMS)]
            apply_event(user, Event(f"e{u}-{e}", "click", user.user_id, item.item_id, 1000.0 + e), item.category, FeatureConfig())
        users.append(user)
    return users


def test_the_server_tunes_each_version_on_its_users_when_asked(tmp_path):
    settings = Settings(data_dir=tmp_path, index_kind="flat", index_tune=True, tune_recall=0.99, tune_queries=60, tune_prefer="memory")
    publish_random_version(ModelStore(tmp_path / "models"), ITEMS)
    live = LiveModel(settings)
    served = live._build(live.store.current(), ITEMS, _users(80))
    # fp16 (128 B/item) alone has recall ~1: something smaller than the configured flat index is chosen.
    assert served.index.spec.kind != "flat" and served.index.bytes_per_item() < 256
    assert served.index.ntotal == len(ITEMS)


def test_bench_index_ends_with_its_json_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["bench", "index", "--items", "2000", "--queries", "50", "--dim", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = {row["kind"] for row in report["configs"]}
    assert {"flat", "ivf_flat", "ivf_pq", "opq_ivf_pq", "hnsw", "sq8", "fp16"} <= kinds
    for row in report["configs"]:
        assert {"kind", "params", "items", "recall_at_10", "p50_ms", "p99_ms", "bytes_per_item", "build_s"} <= set(row)
        assert row["items"] == 2000 and 0 <= row["recall_at_10"] <= 1
    assert np.isclose(next(r for r in report["configs"] if r["kind"] == "flat")["recall_at_10"], 1.0)
    assert (tmp_path / "reports" / "bench-index-2000.png").exists()


def test_bench_http_answers_every_request_and_ends_with_json(monkeypatch):
    monkeypatch.setenv("STREAMREC_API_PORT", str(free_port()))
    result = CliRunner().invoke(app, ["bench", "http", "--items", "3000", "--users", "50", "--requests", "200", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["items"] == 3000 and 0 < report["p50_ms"] <= report["p99_ms"]
