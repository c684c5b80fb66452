"""The plots people look at instead of tables."""

from __future__ import annotations

from streamrec.index.cost import Measurement
from streamrec.index.kinds import IndexSpec
from streamrec.plots import tuning_map


def _m(kind: str, recall: float, p99: float, size: float) -> Measurement:
    return Measurement(IndexSpec(kind), 1000, recall, p99 / 2, p99, p99 / 10, size, 0.1)


def test_the_tuning_plot_is_written(tmp_path):
    measured = [_m("flat", 1.0, 5.0, 256), _m("hnsw", 0.97, 0.2, 500)]
    path = tuning_map(tmp_path / "tune.png", {"faiss": measured}, measured[1], "test")
    assert path.read_bytes()[:4] == b"\x89PNG"
