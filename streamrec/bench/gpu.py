"""`streamrec bench gpu`: the GPU paths measured against the CPU, in one run.

Three parts, each on CUDA where torch and faiss see a GPU, and on the CPU
beside it (its threads capped, to stand for the 2-core machine the CPU
figures elsewhere come from):

- **trainer**: `streamrec.trainer.train.train` on a simulated log, the same data, config
  and seed on each device (CUDA with mixed precision): examples/s, seconds per
  epoch, validation recall@20;
- **index**: flat, IVF-Flat, IVF-PQ and (where the faiss build has it) CAGRA at
  each catalog size of `embedding_like` vectors: recall@10 against exact,
  single-query p50/p99, batched ms per query, build seconds, bytes per item;
- **publisher**: the step the publisher runs per batch of users: encode their
  features, the user tower, one search of the index, for batches of 1k-100k.

Without a GPU only the CPU side runs, so the same command is tested here.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import replace

import faiss
import torch

from streamrec.bench.index import embedding_like
from streamrec.embeddings.encoding import ModelConfig, encode_users
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.foundation.features import FeatureConfig, UserFeatures
from streamrec.foundation.schema import Event
from streamrec.foundation.settings import Settings
from streamrec.index.cost import exact_neighbours, measure_build
from streamrec.index.kinds import IndexSpec, build, cagra_available, gpu_count
from streamrec.shop.simulate import Shop, ShopConfig
from streamrec.trainer.examples import Split, build_examples
from streamrec.trainer.train import TrainConfig, TrainResult, train

K = 10
GPU_KINDS = ("flat", "ivf_flat", "ivf_pq", "cagra")
CPU_KINDS = ("flat", "ivf_flat", "ivf_pq")  # CAGRA is GPU-only


def devices() -> list[tuple[str, torch.device]]:
    """The devices to compare: the CPU, and CUDA where torch sees it."""
    found = [("cpu", torch.device("cpu"))]
    if torch.cuda.is_available():
        found.append(("cuda", torch.device("cuda")))
    return found


def cap_cpu_threads(threads: int) -> None:
    """torch's and faiss's CPU threads: what the CPU side is measured with."""
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "gpu": gpu,
        "faiss_gpus": gpu_count(),
        "cagra": cagra_available(),
    }


def simulated_split(events: int, settings: Settings) -> tuple[Split, list]:
    """A log with planted tastes (users a tenth of the events, items a fortieth), split as the trainer splits."""
    shop = Shop(
        ShopConfig(users=max(100, events // 10), items=max(100, events // 40), categories=20, seed=7, new_item_every=0)
    )
    log = [record for record in shop.stream(events) if isinstance(record, Event)]
    items = shop.catalog()
    split = build_examples(
        log,
        {i.item_id: i for i in items},
        FeatureConfig.from_settings(settings),
        purchase_weight=settings.purchase_weight,
    )
    return split, items


def trainer_figures(result: TrainResult, seconds: float, examples: int) -> dict:
    epochs = len(result.history)
    return {
        "examples": examples,
        "epochs": epochs,
        "examples_per_s": round(result.examples_per_s, 1),
        "epoch_s": round(seconds / max(1, epochs), 2),
        "valid_recall@20": round(result.valid.recall[20], 5),
    }


def bench_trainer(events: int, epochs: int, settings: Settings, on_status: Callable[[str], None]) -> dict[str, dict]:
    """The same training on each device."""
    split, items = simulated_split(events, settings)
    config = replace(settings.section(TrainConfig, "train_", eval_k=20), epochs=epochs, patience=epochs)
    out = {}
    for name, device in devices():
        on_status(f"trainer on {name}: {len(split.train):,} examples x {epochs} epochs ...")
        started = time.perf_counter()
        result = train(split, items, ModelConfig.from_settings(settings), config, device, settings.affinity_half_life_s)
        out[name] = trainer_figures(result, time.perf_counter() - started, len(split.train))
        on_status(f"  {out[name]}")
    if "cuda" in out:
        out["cuda_to_cpu_examples_per_s"] = round(out["cuda"]["examples_per_s"] / out["cpu"]["examples_per_s"], 2)
    return out


def bench_indexes(sizes: list[int], queries: int, on_status: Callable[[str], None]) -> list[dict]:
    """Each kind at each size, on the GPU where faiss has one, else the CPU."""
    on_gpu = gpu_count() > 0
    kinds = [k for k in GPU_KINDS if k != "cagra" or cagra_available()] if on_gpu else list(CPU_KINDS)
    rows = []
    for n in sizes:
        vectors = embedding_like(n, 64, seed=0)
        sample = embedding_like(queries, 64, seed=1)
        truth = exact_neighbours(vectors, sample, K, use_gpu=on_gpu)
        for kind in kinds:
            on_status(f"index {kind} at {n:,} items on {'GPU' if on_gpu else 'CPU'} ...")
            built = build(IndexSpec(kind, nprobe=32, ef_search=64), vectors, use_gpu=on_gpu)
            for measured in measure_build(built, sample, truth, batch_size=1024):
                rows.append({**measured.as_row(K), "device": "gpu" if built.on_gpu else "cpu"})
            del built
    return rows


PUBLISHER_INDEX = IndexSpec("ivf_flat", nprobe=32)  # the kind a large catalog is served with


def bench_publisher(
    batches: list[int], catalog: int, settings: Settings, on_status: Callable[[str], None]
) -> list[dict]:
    """Users/s of the publisher's step: encode, user tower (untrained: the
    cost is the same), search the top 20, per device and batch size."""
    config = ModelConfig.from_settings(settings)
    split, _ = simulated_split(20_000, settings)
    states: list[UserFeatures] = split.train.states
    vectors = embedding_like(catalog, config.dim, seed=0)
    rows = []
    for name, device in devices():
        model = TwoTower(config).to(device).eval()
        index = build(PUBLISHER_INDEX, vectors, use_gpu=name == "cuda")
        for size in batches:
            users = [states[n % len(states)] for n in range(size)]
            on_status(f"publisher step on {name}: {size:,} users, {catalog:,} items ...")
            started = time.perf_counter()
            encoded = encode_users(users, time.time(), config, settings.affinity_half_life_s)
            encoded_s = time.perf_counter() - started
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
                user_vectors = model.user_vectors(to_tensors(encoded, device)).float().cpu().numpy()
            tower_s = time.perf_counter() - started - encoded_s
            index.search(user_vectors, 20)
            total = time.perf_counter() - started
            rows.append(
                {
                    "device": name,
                    "users": size,
                    "items": catalog,
                    "encode_s": round(encoded_s, 3),
                    "tower_s": round(tower_s, 3),
                    "search_s": round(total - encoded_s - tower_s, 3),
                    "users_per_s": round(size / total, 1),
                }
            )
    return rows


def bench_gpu(
    *,
    events: int,
    epochs: int,
    sizes: list[int],
    queries: int,
    batches: list[int],
    publisher_items: int,
    cpu_threads: int,
    settings: Settings,
    on_status: Callable[[str], None] = lambda line: None,
) -> dict:
    started = time.perf_counter()
    cap_cpu_threads(cpu_threads)
    report = {"benchmark": "gpu", "machine": machine(), "cpu_threads": cpu_threads}
    report["trainer"] = bench_trainer(events, epochs, settings, on_status)
    report["index"] = bench_indexes(sizes, queries, on_status)
    report["publisher"] = bench_publisher(batches, publisher_items, settings, on_status)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
