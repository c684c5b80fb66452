"""`streamrec bench quality`: the product against tuned classical peers on a
real interaction log, judged the way users feel it (`streamrec.trainer.eval_protocol`).

The product side goes the whole way a shop's data goes: the training events
are replayed to a broker, folded by a worker, cached and learned by the
trainer (`streamrec train`'s own function), served by the API server, and
scored on what `GET /recommendations/{user}` answers. Nothing of the test
window reaches it. Peers are fitted on the same training events.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import Manifest, ModelStore
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.shop.replay import send_replay
from streamrec.trainer.config import TrainerConfig
from streamrec.trainer.data import open_cache, refresh_cache
from streamrec.trainer.eval_protocol import DEPTH, Quality, WindowSplit, judge, window_split
from streamrec.trainer.job import train_and_publish

PRODUCT = "streamrec"
DIVERSITIES = (0.0, 0.5, 0.8)  # the knob's settings the trade-off is measured at
SHOWN = 20  # the list length of the diversity trade-off: what a user is shown


@dataclass
class QualityReport:
    systems: dict[str, Quality]  # the product's first seed, and every peer
    params: dict[str, dict] = field(default_factory=dict)  # each peer's chosen grid point
    product_runs: list[Quality] = field(default_factory=list)  # one per seed
    manifests: list[dict] = field(default_factory=list)  # the trainer's own test figures, per seed
    diversity: dict[float, Quality] = field(default_factory=dict)  # the first seed's lists of 20 per knob setting
    buy_again: dict[str, Quality] = field(default_factory=dict)  # the product's and the baselines', on repeats
    train_s: dict[str, list[float]] = field(default_factory=dict)  # per system (the product: per seed)
    first_servable_s: list[float] = field(default_factory=list)  # the product's, per seed
    tune_s: dict[str, float] = field(default_factory=dict)  # each peer's grid on the validation window
    blends: list[dict] = field(default_factory=list)  # the neighbours the trainer chose, per seed

    def best_peer(self) -> str | None:
        peers = {name: q for name, q in self.systems.items() if name != PRODUCT}
        return max(peers, key=lambda name: peers[name].recall[20]) if peers else None

    def product_spread(self) -> dict[str, dict[str, float]]:
        """Per measure the users see first: the product's mean, lowest and highest over its seeds."""
        measures = {f"recall@{k}": lambda q, k=k: q.recall[k] for k in (10, 20, 50)} | {"ndcg@20": lambda q: q.ndcg[20]}
        spread = {}
        for name, measure in measures.items():
            values = [measure(run) for run in self.product_runs]
            spread[name] = {
                "mean": round(statistics.mean(values), 5),
                "min": round(min(values), 5),
                "max": round(max(values), 5),
            }
        return spread

    def to_json(self) -> dict:
        recalls = [run.recall[20] for run in self.product_runs]
        best = self.best_peer()
        product = statistics.mean(recalls)
        ratios = [round(r / self.systems[best].recall[20], 4) for r in recalls] if best else []
        return {
            "benchmark": "quality",
            "systems": {name: q.to_json() for name, q in self.systems.items()},
            "product": PRODUCT,
            "product_over_seeds": self.product_spread(),
            "product_recall@20_per_seed": [round(r, 5) for r in recalls],
            "product_recall@20_mean": round(product, 5),
            "product_recall@20_spread": round(max(recalls) - min(recalls), 5),
            "ratio_to_best_peer_per_seed": ratios,
            "train_s": self.train_s,
            "product_first_servable_s": self.first_servable_s,
            "peer_tune_s": self.tune_s,
            "product_neighbours_per_seed": self.blends,
            "manifest_test_recall@20_per_seed": [m.get("recall@20") for m in self.manifests],
            "buy_again": {name: q.to_json() for name, q in self.buy_again.items()},
            "diversity_tradeoff": [
                {"diversity": d, "recall@20": round(q.recall[20], 5), "diversity@20": round(q.diversity, 5)}
                for d, q in self.diversity.items()
            ],
            "best_peer": best,
            "ratio_to_best_peer": round(product / self.systems[best].recall[20], 4) if best else None,
            "peer_params": self.params,
        }


@dataclass
class ProductRun:
    rankings: dict[str, list[str]]  # each test user's list, without the user's past items
    manifest_test: dict  # the trained version's own test figures
    by_diversity: dict[float, dict[str, list[str]]]  # lists of SHOWN items per knob setting
    train_s: float  # from the first refresh's start to the served version
    first_servable_s: float  # the first refresh up to a servable model
    blend: dict  # the neighbours' kind and weight the trainer chose
    buy_again: dict[str, list[str]]  # GET /users/{id}/buy-again for the users with repeat purchases


async def product_rankings(
    settings: Settings,
    kafka: KafkaConnection,
    split: WindowSplit,
    items: list[Item],
    on_status: Callable[[str], None] = lambda line: None,
    diversities: tuple[float, ...] = (),
) -> ProductRun:
    """What the API answers each test user, after the whole way of the data."""
    on_status(f"replaying {len(split.train):,} training events ...")
    async with ShopProducer(kafka, settings) as producer:
        await send_replay(producer, split.train, items)
    await _fold(settings, kafka, split.train, on_status)
    on_status("training (the trainer's own refresh) ...")
    trained = await train_product(settings, kafka)
    manifest = trained.served
    on_status(
        f"first servable version in {trained.first_servable_s} s; serving {manifest.version} "
        f"({trained.total_s} s in all) and asking the API for {len(split.targets):,} users ..."
    )
    rankings, by_diversity, again = await _ask_api(settings, kafka, split, diversities)
    return ProductRun(
        rankings,
        manifest.metrics.get("test", {}),
        by_diversity,
        trained.total_s,
        trained.first_servable_s,
        manifest.params.blend.to_json(),
        again,
    )


@dataclass(frozen=True)
class Trained:
    """The trainer's refreshes as deployed: the first servable version and the one served after it."""

    first: Manifest
    served: Manifest  # the refinement of a first version cut short by its budget, where the gate passed it
    total_s: float  # from the first refresh's start to the served version

    @property
    def first_servable_s(self) -> float:
        """The first refresh up to a servable model: examples, towers, neighbours and their choice."""
        training = self.first.training
        return round(training.examples_s + training.train_s + training.neighbours_s, 2)


async def train_product(settings: Settings, kafka: KafkaConnection) -> Trained:
    """The trainer's own refreshes on what the worker folded: the first version
    (time-budgeted, forced current), then, if the budget cut it short, its
    refinement, made current only if the gate passes, as `streamrec train` runs them."""
    trainer = TrainerConfig.from_settings(settings)
    cache = open_cache(trainer)
    await refresh_cache(trainer, kafka, cache)
    store = ModelStore.in_data_dir(settings.data_dir)
    first = await _refresh(trainer, cache, store, force=True)
    if not first.training.cut_short:
        return Trained(first, first, first.training.seconds)
    refined = await _refresh(trainer, cache, store, force=False)
    served = store.load_manifest(store.current() or first.version)
    return Trained(first, served, round(first.training.seconds + refined.training.seconds, 2))


async def _refresh(trainer: TrainerConfig, cache, store: ModelStore, *, force: bool) -> Manifest:
    outcome = await asyncio.to_thread(train_and_publish, trainer, cache, store, force=force)
    if outcome.manifest is None:
        raise RuntimeError(f"the trainer made no version: {outcome.reason}")
    return outcome.manifest


async def _fold(
    settings: Settings, kafka: KafkaConnection, events: list[Event], on_status: Callable[[str], None]
) -> None:
    """A worker folds every replayed event into the user features (and their changelog)."""
    stop = asyncio.Event()
    process = WorkerProcess(settings.derive(publish_recommendations=False), kafka)
    running = asyncio.create_task(process.run(stop))
    status = process.worker.status
    try:
        while status.events + status.duplicates + status.dead_letters < len(events):
            if running.done():
                running.result()
                raise RuntimeError("the worker stopped before folding the log")
            await asyncio.sleep(0.2)
        on_status(f"the worker folded {status.events:,} events")
    finally:
        stop.set()
        await running  # a clean stop flushes the changelog the server reads


async def _ask_api(
    settings: Settings, kafka: KafkaConnection, split: WindowSplit, diversities: tuple[float, ...]
) -> tuple[dict[str, list[str]], dict[float, dict[str, list[str]]], dict[str, list[str]]]:
    """The judged lists: long enough to filter each user's whole past out; per
    diversity setting, the SHOWN items the API answers (it leaves out the
    items it knows the user had; the rest of the past is filtered here); and
    buy-again's SHOWN items for each user who bought something again."""
    stop = asyncio.Event()
    live = LiveModel(LiveConfig.from_settings(settings))
    serving = asyncio.create_task(run_server(settings, kafka, stop, live))
    rankings: dict[str, list[str]] = {}
    by_diversity: dict[float, dict[str, list[str]]] = {d: {} for d in diversities}
    try:
        while live.current is None or len(live.features) < len(split.seen):
            if serving.done():
                serving.result()
                raise RuntimeError("the server stopped before serving")
            await asyncio.sleep(0.1)
        base = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for user in split.targets:
                past = split.seen[user]
                k = min(settings.max_k, DEPTH + len(past))  # the past is filtered here, as the protocol asks
                path = f"/recommendations/{quote(user, safe='')}"
                ranked = await _item_ids(http, path, k=k)
                rankings[user] = [item for item in ranked if item not in past][:DEPTH]
                for diversity, lists in by_diversity.items():
                    shown = await _item_ids(http, path, k=SHOWN, diversity=diversity)
                    lists[user] = [item for item in shown if item not in past]
            again = {
                user: await _item_ids(http, f"/users/{quote(user, safe='')}/buy-again", k=SHOWN)
                for user in split.repeats
            }
    finally:
        stop.set()
        await serving
    return rankings, by_diversity, again


async def _item_ids(http: httpx.AsyncClient, path: str, **params: object) -> list[str]:
    """The item ids of one API answer, in its order."""
    answer = await http.get(path, params=params)
    answer.raise_for_status()
    return [entry["item_id"] for entry in answer.json()["items"]]


def quality_settings(settings: Settings, seed: int, api_port: int, worker_port: int) -> Settings:
    """One product run's own topics, group, data and seed, so runs never mix;
    a k large enough to filter each user's past from the API's answer, which
    leaves out the clicked items it knows (as the protocol does)."""
    tag = uuid.uuid4().hex[:8]
    return settings.derive(
        **{
            "topic_prefix": f"quality-{tag}.",
            "app_id": f"quality{tag}",
            "data_dir": settings.data_dir / "bench" / f"quality-{tag}",
            "train_seed": seed,
            "api_port": api_port,
            "worker_port": worker_port,
            "max_k": 10_000,
            "exclude_clicked": True,
        }
    )


async def bench_quality(
    settings: Settings,
    kafka: KafkaConnection,
    events: list[Event],
    items: list[Item],
    *,
    seeds: int = 1,
    peers: bool = True,
    ports: tuple[int, int],
    on_status: Callable[[str], None] = lambda line: None,
) -> QualityReport:
    split = window_split(events)
    category_of = {item.item_id: item.category for item in items}
    item_ids = [item.item_id for item in items]
    on_status(
        f"{len(events):,} events: {len(split.train):,} to learn from, "
        f"{len(split.targets):,} users with a window of new items"
    )
    report = QualityReport({})
    for seed in range(seeds):
        run_settings = quality_settings(settings, seed, *ports)
        run = await product_rankings(
            run_settings, kafka, split, items, on_status, diversities=DIVERSITIES if seed == 0 else ()
        )
        quality = judge(run.rankings, split.targets, len(item_ids), category_of)
        on_status(
            f"seed {seed}: recall@20 {quality.recall[20]:.4f} (its manifest: {run.manifest_test.get('recall@20')})"
        )
        report.product_runs.append(quality)
        report.manifests.append(run.manifest_test)
        report.train_s.setdefault(PRODUCT, []).append(run.train_s)
        report.first_servable_s.append(run.first_servable_s)
        report.blends.append(run.blend)
        for diversity, lists in run.by_diversity.items():
            report.diversity[diversity] = judge(lists, split.targets, len(item_ids), category_of, ks=(SHOWN,))
        if seed == 0 and split.repeats:
            report.buy_again = judge_buy_again(split, run.buy_again, len(item_ids), category_of)
    report.systems[PRODUCT] = report.product_runs[0]
    if peers:
        from streamrec.bench.peers import tuned_peers

        for peer in await asyncio.to_thread(tuned_peers, split, item_ids, category_of, None, on_status):
            report.systems[peer.name] = judge(peer.rankings, split.targets, len(item_ids), category_of)
            report.params[peer.name] = peer.params
            report.train_s[peer.name] = [round(peer.train_s, 2)]
            report.tune_s[peer.name] = round(peer.tune_s, 2)
    return report


def judge_buy_again(
    split: WindowSplit, product: dict[str, list[str]], catalog_size: int, category_of: dict[str, str]
) -> dict[str, Quality]:
    """Buy-again's lists and the recency and frequency baselines, on the window's repeat purchases."""
    from streamrec.bench.peers import repeat_baselines

    lists = {f"{PRODUCT} buy-again": product, **repeat_baselines(split, list(split.repeats), SHOWN)}
    repeats = split.repeats
    return {name: judge(ranked, repeats, catalog_size, category_of, ks=(10, SHOWN)) for name, ranked in lists.items()}


def write_figures(report: QualityReport, directory: Path, title: str) -> list[Path]:
    """The JSON and the plot: recall@K of every system, and the diversity trade-off."""
    from streamrec.plots import recall_curves

    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "bench-quality.json"
    data.write_text(json.dumps(report.to_json(), indent=1))
    tradeoff = {d: (q.recall[SHOWN], q.diversity) for d, q in report.diversity.items()}
    return [data, recall_curves(directory / "bench-quality.png", report.systems, title, tradeoff)]
