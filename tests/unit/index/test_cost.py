"""The index cost model: measured against exact search, the cheapest configuration meeting the target chosen."""

from __future__ import annotations

from streamrec.bench.index import embedding_like
from streamrec.foundation.settings import Settings
from streamrec.index.cost import Measurement, Target, choose, exact_neighbours, measure, settings_for
from streamrec.index.kinds import IndexSpec
from streamrec.serving.live import LiveConfig

VECTORS = embedding_like(3000, 16)


QUERIES = embedding_like(100, 16, seed=1)


TRUTH = exact_neighbours(VECTORS, QUERIES, 10)


def _m(kind: str, recall: float, p99: float, size: float) -> Measurement:
    return Measurement(IndexSpec(kind), 1000, recall, p99 / 2, p99, p99 / 10, size, 0.1)


def test_the_cheapest_configuration_meeting_the_target_is_chosen():
    measured = [
        _m("flat", 1.0, 5.0, 256),
        _m("hnsw", 0.97, 0.2, 500),
        _m("ivf_pq", 0.86, 0.1, 30),
        _m("sq8", 0.99, 1.0, 64),
    ]
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
    assert LiveConfig.from_settings(Settings()).spec == chosen


def test_big_catalogs_skip_the_builds_that_take_minutes_to_train():
    from streamrec.index.cost import BUILDS, QUICK_ABOVE_ITEMS, candidates_for

    assert candidates_for(10_000) == BUILDS
    quick = candidates_for(QUICK_ABOVE_ITEMS + 1)
    assert "opq_ivf_pq" not in {b.kind for b in quick} and {"hnsw", "ivf_pq", "flat"} <= {b.kind for b in quick}
