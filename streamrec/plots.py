"""Plots a person would rather look at than read (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
import numpy as np  # noqa: E402

from streamrec.index.cost import Measurement  # noqa: E402
from streamrec.trainer.eval_protocol import Quality  # noqa: E402


def recall_curves(
    path: Path, systems: dict[str, Quality], title: str, tradeoff: dict[float, tuple[float, float]] | None = None
) -> Path:
    """Recall@K by K, one line per system (the first drawn thickest): `streamrec
    evaluate` and `bench quality`; beside it, when given, recall against
    diversity at each setting of the knob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 2 if tradeoff else 1, figsize=(12 if tradeoff else 7, 4.5), squeeze=False)
    axis = axes[0][0]
    for n, (name, quality) in enumerate(systems.items()):
        ks = sorted(quality.recall)
        axis.plot(
            ks,
            [quality.recall[k] for k in ks],
            marker="o",
            markersize=3,
            linewidth=3 if n == 0 else 1.3,
            label=f"{name} ({quality.recall[20]:.3f} at 20)" if 20 in quality.recall else name,
        )
    axis.set_xscale("log")
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("K (list length)")
    axis.set_ylabel("recall@K (new items of each user's window)")
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    axis.legend()
    if tradeoff:
        axis = axes[0][1]
        settings = sorted(tradeoff)
        axis.plot([tradeoff[d][1] for d in settings], [tradeoff[d][0] for d in settings], marker="o")
        for d in settings:
            axis.annotate(
                f"diversity={d:g}", (tradeoff[d][1], tradeoff[d][0]), textcoords="offset points", xytext=(6, 6)
            )
        axis.set_xlabel("intra-list diversity@20 (pairs from different categories)")
        axis.set_ylabel("recall@20")
        axis.grid(True, alpha=0.3)
        axis.set_title("the diversity knob: what it costs")
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
            [m.p99_ms for m in measured],
            [m.recall_at_k for m in measured],
            s=[20 + 300 * m.bytes_per_item / largest for m in measured],
            alpha=0.6,
            label=label,
        )
    if chosen is not None:
        axis.scatter(
            [chosen.p99_ms],
            [chosen.recall_at_k],
            s=600,
            facecolors="none",
            edgecolors="black",
            linewidths=2,
            label="chosen",
        )
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


def demo_timeline(path: Path, samples: list, milestones) -> Path:
    """The demo's run: events/s and publishes/s above, latency below, with the
    moments a model, the API and the first recommendation arrived."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (rates, latency) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s.t for s in samples]
    rates.plot(t, [s.events_per_s for s in samples], label="events/s")
    rates.plot(t, [s.publishes_per_s for s in samples], label="recommendations published/s")
    latency.plot(t, [s.p50_ms for s in samples], label="p50")
    latency.plot(t, [s.p99_ms for s in samples], label="p99")
    by_minute = sorted(milestones.latencies_by_minute.items())
    if by_minute:
        ends = [60 * (minute + 1) for minute, _ in by_minute]
        latency.step(
            ends,
            [np.percentile(kept, 99) for _, kept in by_minute],
            where="pre",
            color="black",
            linewidth=1.5,
            label="p99 per minute",
        )
    latency.set_ylabel("event → recommendation (ms)")
    latency.set_xlabel("seconds since start")
    marks = {
        "model": milestones.trained_model,
        "API": milestones.api_serving,
        "first rec": milestones.recommendation_published,
        "first model rec": milestones.model_recommendation,
    }
    for axis in (rates, latency):
        for name, at in marks.items():
            if at is not None:
                axis.axvline(at, color="grey", linestyle=":", linewidth=1)
                if axis is rates:
                    axis.annotate(name, (at, 0), rotation=90, fontsize=8, va="bottom", ha="right")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    rates.set_title("streamrec demo")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
