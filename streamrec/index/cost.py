"""The cost model: measure index configurations on sample queries, pick the cheapest.

Each candidate is built once per build-time setting (kind, nlist, PQ code,
HNSW M); its search-time knobs (nprobe, efSearch) are then swept on that one
build, since they cost nothing to change. Recall is measured against the exact
answer (a flat index) on the same queries; latency is the wall time of one
query at a time (what a request sees) and of batches (what the publisher sees).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np

from streamrec.index.kinds import BuiltIndex, IndexSpec, build, cagra_available

SINGLE_QUERIES = 300  # timed one at a time: enough for a p99 that means something


@dataclass(frozen=True)
class Measurement:
    spec: IndexSpec
    items: int
    recall_at_k: float
    p50_ms: float  # one query at a time
    p99_ms: float
    batch_ms_per_query: float  # searching `batch_size` queries together
    bytes_per_item: float
    build_s: float

    def as_row(self, k: int) -> dict:
        """The JSON shape of `streamrec bench index` and `streamrec tune`."""
        return {
            "kind": self.spec.kind,
            "params": self.spec.params(),
            "items": self.items,
            f"recall_at_{k}": round(self.recall_at_k, 4),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "batch_ms_per_query": round(self.batch_ms_per_query, 4),
            "bytes_per_item": round(self.bytes_per_item, 1),
            "build_s": round(self.build_s, 2),
        }


@dataclass(frozen=True)
class Target:
    """What the chosen configuration must meet; None: no bound. `prefer` is
    the cost minimised among those that meet it: p99 latency or memory."""

    recall_floor: float | None = 0.95
    p99_ms: float | None = None
    bytes_per_item: float | None = None
    prefer: str = "latency"

    def met_by(self, m: Measurement) -> bool:
        return (
            (self.recall_floor is None or m.recall_at_k >= self.recall_floor)
            and (self.p99_ms is None or m.p99_ms <= self.p99_ms)
            and (self.bytes_per_item is None or m.bytes_per_item <= self.bytes_per_item)
        )

    def cost(self, m: Measurement) -> tuple:
        latency, memory = m.p99_ms, m.bytes_per_item
        return (memory, latency) if self.prefer == "memory" else (latency, memory)


def choose(measurements: Iterable[Measurement], target: Target) -> Measurement | None:
    """The cheapest measurement meeting `target`; None when none does."""
    meeting = [m for m in measurements if target.met_by(m)]
    return min(meeting, key=target.cost) if meeting else None


# Build-time settings and the search-time sweep tried on each. IVF keeps an
# 8-byte id per item beside its code: 16 sub-quantizers of 11 bits (22 bytes)
# is the richest PQ code that fits 32 bytes per item.
BUILDS: tuple[IndexSpec, ...] = (
    IndexSpec("flat"),
    IndexSpec("fp16"),
    IndexSpec("sq8"),
    IndexSpec("hnsw", hnsw_m=16),
    IndexSpec("hnsw", hnsw_m=32),
    IndexSpec("ivf_flat"),
    IndexSpec("ivf_pq", pq_m=16),
    IndexSpec("opq_ivf_pq", pq_m=16, pq_bits=11),
    IndexSpec("ivf_pq", pq_m=32),
)
QUICK_ABOVE_ITEMS = 200_000  # above this, start-up tuning skips the builds that take minutes to train


GPU_BUILDS: tuple[IndexSpec, ...] = (IndexSpec("cagra", hnsw_m=32, ef_search=64),)  # where `cagra_available`


def candidates_for(items: int) -> tuple[IndexSpec, ...]:
    """The builds worth measuring for a catalog of `items` when a version is
    about to be served: OPQ's rotation took 8 minutes at 1M items here; CAGRA
    where the GPU and the faiss build have it."""
    builds = BUILDS if items <= QUICK_ABOVE_ITEMS else tuple(b for b in BUILDS if b.kind != "opq_ivf_pq")
    return builds + GPU_BUILDS if cagra_available() else builds


EF_SEARCH = (16, 32, 64, 128)
NPROBE = (4, 8, 16, 32, 64)


def sweep(spec: IndexSpec) -> list[IndexSpec]:
    """The search-time variants of one build."""
    if spec.kind in ("hnsw", "cagra"):
        return [replace(spec, ef_search=ef) for ef in EF_SEARCH]
    if spec.kind.startswith(("ivf", "opq")):
        return [replace(spec, nprobe=p) for p in NPROBE if p <= spec.nlist]
    return [spec]


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, use_gpu: bool = False) -> np.ndarray:
    return build(IndexSpec("flat"), vectors, use_gpu=use_gpu).search(queries, k)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def time_queries(
    search: Callable[[np.ndarray], object], queries: np.ndarray, batch_size: int
) -> tuple[float, float, float]:
    """p50 and p99 ms of single queries, and ms per query in batches."""
    single = queries[:SINGLE_QUERIES]
    search(single[:10])  # warm caches and thread pools
    times = []
    for q in range(len(single)):
        started = time.perf_counter()
        search(single[q : q + 1])
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    for first in range(0, len(queries), batch_size):
        search(queries[first : first + batch_size])
    per_query = (time.perf_counter() - started) / len(queries)
    p50, p99 = np.percentile(np.asarray(times) * 1000, [50, 99])
    return float(p50), float(p99), per_query * 1000


def measure_build(built: BuiltIndex, queries: np.ndarray, truth: np.ndarray, batch_size: int = 64) -> list[Measurement]:
    """Every search-time variant of one built index."""
    k, size = truth.shape[1], built.bytes_per_item()
    out = []
    for spec in sweep(built.spec):
        variant = replace(built, spec=spec)
        found = variant.search(queries, k)[1]
        p50, p99, batched = time_queries(lambda q, v=variant: v.search(q, k), queries, batch_size)
        out.append(Measurement(spec, built.ntotal, recall(found, truth), p50, p99, batched, size, built.build_s))
    return out


def measure(
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    builds: Iterable[IndexSpec] = BUILDS,
    batch_size: int = 64,
    threads: int | None = None,
    on_measured: Callable[[list[Measurement]], None] = lambda _: None,
) -> list[Measurement]:
    """Build each candidate over `vectors` and measure it on `queries`, whose
    exact neighbours are `truth` ([queries, k] rows)."""
    results: list[Measurement] = []
    for spec in builds:
        measured = measure_build(build(spec, vectors, threads=threads), queries, truth, batch_size)
        on_measured(measured)
        results.extend(measured)
    return results


def settings_for(spec: IndexSpec) -> dict[str, str]:
    """The environment that makes `streamrec serve` use `spec`."""
    env = {"STREAMREC_INDEX_KIND": spec.kind}
    used: tuple[str, ...] = {"hnsw": ("hnsw_m", "ef_search"), "ivf_flat": ("nlist", "nprobe")}.get(spec.kind, ())
    if spec.kind in ("ivf_pq", "opq_ivf_pq"):
        used = ("nlist", "nprobe", "pq_m", "pq_bits")
    for field in used:
        env[f"STREAMREC_INDEX_{field.upper()}"] = str(asdict(spec)[field])
    return env
