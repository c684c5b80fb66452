"""FAISS index kinds and their knobs, built on the GPU when faiss sees one.

Every index holds rows 0..n-1 in insertion order (the caller keeps the row ->
item id list), uses inner product (the towers give unit vectors: a cosine),
and accepts new rows without retraining. Filters are an allow-bitmap over the
rows, passed as a FAISS ID selector, so excluded items are skipped during the
search instead of being cut from a short list afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace

import faiss
import numpy as np

from streamrec.foundation.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf_flat", "ivf_pq", "opq_ivf_pq", "hnsw", "sq8", "fp16", "cagra")
MIN_POINTS_PER_CENTROID = 39  # faiss warns (and clusters badly) below this
GPU_MAX_K = 2048  # faiss-gpu searches for at most this many neighbours
OPQ_ITERATIONS = 12  # faiss's 50 cost 4x the build time for a recall gain under 1% here


@dataclass(frozen=True)
class IndexSpec:
    """One configuration: a kind and the knobs that matter for it.

    nlist/pq_m of 0 mean "chosen from the catalog size". A PQ code takes
    pq_m * pq_bits / 8 bytes: pq_m sub-quantizers of pq_bits each."""

    kind: str = Settings.default("index_kind")
    nlist: int = Settings.default("index_nlist")
    nprobe: int = Settings.default("index_nprobe")
    pq_m: int = Settings.default("index_pq_m")
    pq_bits: int = Settings.default("index_pq_bits")
    hnsw_m: int = Settings.default("index_hnsw_m")
    ef_search: int = Settings.default("index_ef_search")
    ef_construction: int = 80

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; one of {', '.join(KINDS)}")

    @classmethod
    def from_dict(cls, values: dict) -> IndexSpec:
        """A spec from a manifest: known fields only, each a small positive int (or the kind)."""
        knobs = {f.name for f in fields(cls)} - {"kind"}
        checked = {name: int(v) for name, v in values.items() if name in knobs and 0 <= int(v) <= 1 << 20}
        return cls(kind=str(values.get("kind")), **checked)

    def to_dict(self) -> dict:
        return asdict(self)

    def params(self) -> dict:
        """The knobs this kind actually uses (for tables and JSON)."""
        if self.kind in ("ivf_flat",):
            return {"nlist": self.nlist, "nprobe": self.nprobe}
        if self.kind in ("ivf_pq", "opq_ivf_pq"):
            return {"nlist": self.nlist, "nprobe": self.nprobe, "pq_m": self.pq_m, "pq_bits": self.pq_bits}
        if self.kind == "hnsw":
            return {"M": self.hnsw_m, "efSearch": self.ef_search, "efConstruction": self.ef_construction}
        if self.kind == "cagra":
            return {"graph_degree": self.hnsw_m, "itopk_size": self.ef_search}
        return {}

    def label(self) -> str:
        """Short enough for a table cell: the knobs a search or a build turns."""
        short = {
            "hnsw": f" M={self.hnsw_m} ef={self.ef_search}",
            "ivf_flat": f" {self.nlist} lists, probe {self.nprobe}",
            "cagra": f" degree={self.hnsw_m} itopk={self.ef_search}",
        }
        if self.kind in ("ivf_pq", "opq_ivf_pq"):
            return f"{self.kind} PQ{self.pq_m}x{self.pq_bits} {self.nlist} lists, probe {self.nprobe}"
        return self.kind + short.get(self.kind, "")


def resolved(spec: IndexSpec, n: int, dim: int) -> IndexSpec:
    """Fill the size-dependent knobs for `n` vectors of `dim` dimensions: about
    4 sqrt(n) lists (never fewer than 39 points each), dim/2 PQ sub-quantizers
    (a divisor of dim), fewer PQ bits when the catalog is too small to train
    2^bits centroids."""
    most_lists = max(1, n // MIN_POINTS_PER_CENTROID)
    nlist = min(spec.nlist or 4 * int(math.sqrt(n)), most_lists)
    pq_m = min(spec.pq_m or dim // 2, dim)
    while dim % pq_m:
        pq_m -= 1
    pq_bits = max(1, min(spec.pq_bits, int(math.log2(most_lists))))
    return replace(spec, nlist=nlist, pq_m=pq_m, pq_bits=pq_bits, nprobe=min(spec.nprobe, nlist))


def _factory(spec: IndexSpec) -> str:
    pq = f"PQ{spec.pq_m}x{spec.pq_bits}"
    return {
        "flat": "Flat",
        "ivf_flat": f"IVF{spec.nlist},Flat",
        "ivf_pq": f"IVF{spec.nlist},{pq}",
        "opq_ivf_pq": f"OPQ{spec.pq_m},IVF{spec.nlist},{pq}",
        "hnsw": f"HNSW{spec.hnsw_m},Flat",
        "sq8": "SQ8",
        "fp16": "SQfp16",
    }[spec.kind]


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def cagra_available() -> bool:
    """cuVS CAGRA is in some GPU builds of faiss only (not the `faiss-gpu-cu12`
    wheel): asked of the installed build at run time, never assumed."""
    return gpu_count() > 0 and hasattr(faiss, "GpuIndexCagra")


def _cagra(spec: IndexSpec, vectors: np.ndarray) -> faiss.Index:
    """A CAGRA graph over `vectors`, built on the GPU (its build *is* the add)."""
    config = faiss.GpuIndexCagraConfig()
    config.graph_degree = spec.hnsw_m
    config.intermediate_graph_degree = 2 * spec.hnsw_m
    index = faiss.GpuIndexCagra(faiss.StandardGpuResources(), vectors.shape[1], faiss.METRIC_INNER_PRODUCT, config)
    index.train(vectors)
    return index


@dataclass
class BuiltIndex:
    """A searchable index with its spec; `on_gpu` says where it ended up."""

    spec: IndexSpec
    index: faiss.Index
    dim: int
    on_gpu: bool = False
    build_s: float = 0.0
    _cpu_copy: faiss.Index | None = field(default=None, repr=False)  # for filtered searches a GPU cannot fill
    _vectors: np.ndarray | None = field(default=None, repr=False)  # CAGRA's rows: it takes no adds, it rebuilds

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._vectors is not None:  # CAGRA: new items are rare; a GPU rebuilds a graph in seconds
            self._vectors = np.concatenate([self._vectors, vectors])
            self.index, self._cpu_copy = _cagra(self.spec, self._vectors), None
            return
        self.index.add(vectors)
        if self._cpu_copy is not None and self._cpu_copy is not self.index:
            self._cpu_copy.add(vectors)

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (-1 pads) and scores; `allow` is a packed bitmap (np.packbits,
        little bit order) of the rows that may be returned."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.ntotal))
        if allow is not None and self.on_gpu:
            return self._search_oversampled(queries, k, allow)
        return self._search_selected(self.index, queries, k, allow)

    def _search_selected(
        self, index: faiss.Index, queries: np.ndarray, k: int, allow: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        # The selector points into `allow`, and params point to the selector:
        # both stay referenced here until the search returns.
        selector = None if allow is None else faiss.IDSelectorBitmap(len(allow) * 8, faiss.swig_ptr(allow))
        params = self._search_params(selector, k)
        return index.search(queries, k, params=params)

    def _search_params(self, selector: faiss.IDSelector | None, k: int) -> faiss.SearchParameters:
        spec, kind = self.spec, self.spec.kind
        if kind in ("ivf_flat", "ivf_pq"):
            params = faiss.SearchParametersIVF(nprobe=spec.nprobe)
        elif kind == "opq_ivf_pq":
            params = faiss.SearchParametersPreTransform(index_params=faiss.SearchParametersIVF(nprobe=spec.nprobe))
        elif kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=spec.ef_search)
        elif kind == "cagra":
            params = faiss.SearchParametersCagra()
            params.itopk_size = max(spec.ef_search, k)  # CAGRA's working list holds at least the k answers
        else:
            params = faiss.SearchParameters()
        target = params.index_params if kind == "opq_ivf_pq" else params
        if selector is not None:
            target.sel = selector
        return params

    def _search_oversampled(self, queries: np.ndarray, k: int, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GPU indexes take no selectors: ask for k plus every excluded row, then
        drop them. The GPU returns at most GPU_MAX_K: queries that many
        excluded rows leave short are searched again on a CPU copy with the
        bitmap as a selector."""
        allowed = np.unpackbits(allow, bitorder="little")[: self.ntotal].astype(bool)
        wanted = min(self.ntotal, k + int((~allowed).sum()), GPU_MAX_K)
        scores, rows = self.index.search(queries, wanted)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            keep = (rows[q] >= 0) & allowed[np.maximum(rows[q], 0)]
            taken = rows[q][keep][:k]
            out_rows[q, : len(taken)] = taken
            out_scores[q, : len(taken)] = scores[q][keep][:k]
        short = np.flatnonzero((out_rows < 0).any(axis=1)) if wanted < self.ntotal else []
        if len(short):
            out_scores[short], out_rows[short] = self._search_selected(self._cpu_index(), queries[short], k, allow)
        return out_scores, out_rows

    def _cpu_index(self) -> faiss.Index:
        """A CPU copy of a GPU index, made once, when a filtered search first needs it."""
        if self._cpu_copy is None:
            self._cpu_copy = to_cpu(self.index)
            log.warning("more rows filtered than a GPU search returns (%d): short queries search a CPU copy", GPU_MAX_K)
        return self._cpu_copy

    def bytes_per_item(self) -> float:
        """Serialised size over the items: what the index costs in memory."""
        index = to_cpu(self.index) if self.on_gpu else self.index
        return len(faiss.serialize_index(index)) / max(1, self.ntotal)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index."""
    return faiss.index_gpu_to_cpu(index)


def build(
    spec: IndexSpec, vectors: np.ndarray, *, use_gpu: bool | None = None, threads: int | None = None
) -> BuiltIndex:
    """Train and fill an index of `spec` over `vectors` ([n, d] float32).

    `use_gpu` None: the GPU when faiss sees one, else the CPU; a GPU build that
    fails (no memory, a kind the build lacks) falls back to the CPU with a warning.
    """
    if threads:
        faiss.omp_set_num_threads(threads)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    spec = resolved(spec, max(n, 1), dim)
    started = time.perf_counter()
    if spec.kind == "cagra":
        if cagra_available() and use_gpu is not False:
            return BuiltIndex(spec, _cagra(spec, vectors), dim, True, time.perf_counter() - started, _vectors=vectors)
        log.warning("this machine or faiss build has no CAGRA; using HNSW (M=%d), its CPU counterpart", spec.hnsw_m)
        spec = replace(spec, kind="hnsw")
    index = faiss.index_factory(dim, _factory(spec), faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        index.hnsw.efConstruction = spec.ef_construction
    if spec.kind in ("ivf_pq", "opq_ivf_pq"):
        # Polysemous codes (on by default) cost minutes of training and serve
        # Hamming filtering, which streamrec does not use.
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    if spec.kind == "opq_ivf_pq":
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = OPQ_ITERATIONS
    on_gpu = False
    wants_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
    if wants_gpu and not hasattr(faiss, "StandardGpuResources"):
        log.warning("this faiss build has no GPU support; using the CPU index")
    elif wants_gpu and spec.kind != "hnsw":
        try:
            index = faiss.index_cpu_to_all_gpus(index)
            on_gpu = True
        except (RuntimeError, AttributeError) as exc:
            log.warning("GPU index for %s unavailable (%s); using the CPU index", spec.kind, exc)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return BuiltIndex(spec, index, dim, on_gpu, time.perf_counter() - started)
