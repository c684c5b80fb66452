"""Plots a person would rather look at than read (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

from index.tune import Measurement  # noqa: E402
from trainer.evaluate import Metrics  # noqa: E402


def recall_curve(path: Path, curves: dict[str, Metrics], title: str) -> Path:
    """Recall@K by K, one line per ranker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, metrics in curves.items():
        ks = sorted(metrics.recall)
        axis.plot(ks, [metrics.recall[k] for k in ks], marker="o", markersize=3, label=name)
    axis.set_xscale("log")
    axis.set_xlabel("K")
    axis.set_ylabel("recall@K")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def tuning_map(path: Path, series: dict[str, list[Measurement]], chosen: Measurement | None, title: str) -> Path:
    """Recall against p99 latency, one marker per configuration, its area the
    index's bytes per item; the chosen configuration ringed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(8, 5))
    largest = max(m.bytes_per_item for ms in series.values() for m in ms)
    for label, measured in series.items():
        axis.scatter(
            [m.p99_ms for m in measured], [m.recall_at_k for m in measured],
            s=[20 + 300 * m.bytes_per_item / largest for m in measured], alpha=0.6, label=label,
        )  # fmt: skip
    if chosen is not None:
        axis.scatter([chosen.p99_ms], [chosen.recall_at_k], s=600, facecolors="none", edgecolors="black", linewidths=2, label="chosen")
    axis.set_xscale("log")
    axis.set_xlabel("p99 single-query search latency (ms, log scale)")
    axis.set_ylabel("recall against exact search")
    axis.grid(True, alpha=0.3)
    axis.set_title(title + " (marker area: bytes per item)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
