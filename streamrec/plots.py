"""Plots a person would rather look at than read (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

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
