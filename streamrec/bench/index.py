"""`streamrec bench index`: every index kind at several catalog sizes, beside hnswlib.

The vectors are synthetic but shaped like trained item embeddings: clusters in
a 16-dimensional latent space, projected to `dim` and blurred by isotropic
noise, then L2-normalised. (The 10k-item model of `bench train` puts 90% of
its variance in 10 dimensions: these are, if anything, harder.) Queries are
drawn the same way with another seed, as user vectors land among the items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from streamrec.index.cost import BUILDS, EF_SEARCH, Measurement, exact_neighbours, measure, recall, time_queries
from streamrec.index.kinds import IndexSpec

log = logging.getLogger(__name__)

LATENT_DIM = 16


def embedding_like(n: int, dim: int = 64, seed: int = 0, clusters: int | None = None) -> np.ndarray:
    """[n, dim] unit vectors with a low intrinsic dimension (see the module doc)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(12345).standard_normal((LATENT_DIM, dim))  # shared by items and queries
    clusters = clusters or max(10, int(np.sqrt(n)))
    centres = np.random.default_rng(54321).standard_normal((clusters, LATENT_DIM))
    out = np.empty((n, dim), dtype=np.float32)
    for first in range(0, n, 100_000):  # bounded temporaries at 1M
        m = min(100_000, n - first)
        latent = centres[rng.integers(clusters, size=m)] + 0.5 * rng.standard_normal((m, LATENT_DIM))
        x = latent @ basis + 0.5 * rng.standard_normal((m, dim))
        out[first : first + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def hnswlib_measurements(
    vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, batch_size: int, threads: int | None, m: int = 32
) -> list[Measurement]:
    """The same measurements for hnswlib's HNSW, when it is installed (`pip install .[bench]`)."""
    try:
        import hnswlib
    except ImportError:
        log.warning("hnswlib is not installed (pip install -e '.[bench]'): no comparison")
        return []
    n, dim = vectors.shape
    k = truth.shape[1]
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=80)
    index.add_items(vectors, np.arange(n), num_threads=threads or -1)
    build_s = time.perf_counter() - started
    size = dim * 4 + 2 * m * 4 + 4 + 8  # hnswlib's level 0 per element: vector, 2M links, count, label
    out = []
    for ef in EF_SEARCH:
        index.set_ef(max(ef, k))
        found = index.knn_query(queries, k)[0]
        p50, p99, batched = time_queries(
            lambda q: index.knn_query(q, k, num_threads=threads or -1), queries, batch_size
        )
        spec = IndexSpec("hnsw", hnsw_m=m, ef_search=ef)
        out.append(Measurement(spec, n, recall(found.astype(np.int64), truth), p50, p99, batched, size, build_s))
    return out


def bench_index(
    sizes: list[int],
    dim: int = 64,
    queries: int = 1000,
    k: int = 10,
    batch_size: int = 64,
    threads: int | None = None,
    on_measured: Callable[[int, str, list[Measurement]], None] = lambda *_: None,
) -> dict[int, dict[str, list[Measurement]]]:
    """Every build of `streamrec.index.cost.BUILDS` and hnswlib at each size:
    size -> {"faiss": [...], "hnswlib": [...]}."""
    results: dict[int, dict[str, list[Measurement]]] = {}
    for n in sizes:
        vectors = embedding_like(n, dim, seed=0)
        sample = embedding_like(queries, dim, seed=1)
        truth = exact_neighbours(vectors, sample, k)
        ours = measure(vectors, sample, truth, BUILDS, batch_size, threads, lambda ms, n=n: on_measured(n, "faiss", ms))
        theirs = hnswlib_measurements(vectors, sample, truth, batch_size, threads)
        on_measured(n, "hnswlib", theirs)
        results[n] = {"faiss": ours, "hnswlib": theirs}
    return results
