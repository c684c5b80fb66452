"""`streamrec bench streaming`: does the real-time path make recommendations better?

The product is trained as `bench quality` trains it (the training events
replayed to a broker, folded by a worker, learned by the trainer's own
refreshes, served by the API), on each user's events before their window.
Then the test users' window events go through the broker in rounds, each
user's next event per round, a worker folding them; before each, the API is
asked for the user's recommendations. Scored: next-event HR@20 and MRR@20,
over the events whose item the user had not had (the protocol's new items).
With `sessions` the users are anonymous sessions: those that begin in the
log's last day are the test ones, known by their first click.

Beside it, on the same events: the product's answer asked once before the
window (a nightly batch recommender's all day: what the real-time path adds
is the difference), V-SkNN and STAN on the user's clicks so far
(`streamrec.bench.session_knn`), item-kNN from the user's newest item
(cosine of co-occurrence over the training events: the classic session
baseline), and popularity.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from streamrec.bench.quality import quality_settings, train_product
from streamrec.bench.session_knn import STAN, VSKNN, SessionKnn, ranked
from streamrec.embeddings.neighbours import Neighbours
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.settings import Settings
from streamrec.processes import WorkerProcess, run_server
from streamrec.serving.live import LiveConfig, LiveModel
from streamrec.shop.producer import ShopProducer
from streamrec.shop.replay import send_replay
from streamrec.trainer.eval_protocol import WindowSplit, first_new, session_split, window_split

K = 20
REAL_TIME, BATCH, KNN, POPULARITY = "streamrec (real time)", "streamrec (batch)", "item-kNN (newest item)", "popularity"
SESSION_PEERS = {"V-SkNN": VSKNN, "STAN": STAN}
SESSION_CLICKS = 50  # the newest clicks a session-kNN peer reads, as the product's features keep them
FOLD_WAIT_S = 60.0  # a round's events not reflected by the server by then: the round goes on (and says so)


@dataclass
class NextEventScore:
    """Hits and reciprocal ranks of the next item in lists of K."""

    hits: int = 0
    reciprocal: float = 0.0
    events: int = 0

    def add(self, ranked: list[str], item: str) -> None:
        self.events += 1
        if item in ranked[:K]:
            self.hits += 1
            self.reciprocal += 1.0 / (ranked.index(item) + 1)

    def to_json(self) -> dict:
        events = max(self.events, 1)
        return {"hr@20": round(self.hits / events, 4), "mrr@20": round(self.reciprocal / events, 4)}


@dataclass
class StreamingReport:
    users: int
    rounds: int
    train_s: float
    scores: dict[str, NextEventScore] = field(default_factory=dict)
    late_rounds: int = 0  # rounds whose events the server had not all reflected within FOLD_WAIT_S

    def to_json(self) -> dict:
        systems = {name: score.to_json() for name, score in self.scores.items()}

        def real_time_over(name: str) -> float:
            return round(systems[REAL_TIME]["hr@20"] / max(systems[name]["hr@20"], 1e-9), 3)

        return {
            "benchmark": "streaming",
            "systems": systems,
            "events": self.scores[REAL_TIME].events,
            "users": self.users,
            "rounds": self.rounds,
            "late_rounds": self.late_rounds,
            "train_s": self.train_s,
            "real_time_over_batch_hr@20": real_time_over(BATCH),
            **{f"real_time_over_{name}_hr@20": real_time_over(name) for name in SESSION_PEERS},
        }


class _Baselines:
    """Popularity, item-kNN and the session-kNN peers over the training
    events, for any user's clicks so far."""

    def __init__(self, train: list[Event], items: list[Item]):
        self.popular = [item for item, _ in Counter(e.item_id for e in train).most_common()]
        self.ids = [item.item_id for item in items]
        self.row = {item_id: row for row, item_id in enumerate(self.ids)}
        sessions: dict[str, list[tuple[float, int]]] = {}
        for event in train:
            if event.item_id in self.row:
                sessions.setdefault(event.user_id, []).append((event.ts, self.row[event.item_id]))
        histories = [[row for _, row in clicks] for clicks in sessions.values()]
        self.neighbours = Neighbours.from_histories(histories, len(self.ids), k=K * 5)
        self.session_knn = {name: SessionKnn(sessions, len(self.ids), config) for name, config in SESSION_PEERS.items()}

    def popularity(self, had: set[str]) -> list[str]:
        return first_new(self.popular, had, K)

    def knn(self, clicks: list[str], had: set[str]) -> list[str]:
        row = self.row.get(clicks[-1]) if clicks else None
        near = [] if row is None else [self.ids[r] for r in self.neighbours.rows[row] if r >= 0]
        return first_new(near, had, K)

    def session(self, name: str, clicks: list[str], now: float, had: set[str]) -> list[str]:
        rows = [self.row[item] for item in clicks[-SESSION_CLICKS:] if item in self.row]
        scores = self.session_knn[name].scores(rows, now)
        return first_new(ranked(scores, self.ids, K + len(had)), had, K)


async def bench_streaming(
    settings: Settings,
    kafka: KafkaConnection,
    events: list[Event],
    items: list[Item],
    *,
    users: int,
    per_user: int,
    seed: int,
    ports: tuple[int, int],
    sessions: bool = False,
    on_status: Callable[[str], None] = lambda line: None,
) -> StreamingReport:
    """`sessions`: the log's users are anonymous sessions (`session_split`), else returning users (`window_split`)."""
    split = session_split(events) if sessions else window_split(events)
    chosen = sorted(split.windows)
    random.Random(seed).shuffle(chosen)
    chosen = chosen[:users]
    on_status(f"{len(split.train):,} events to learn from; {len(chosen):,} test users, up to {per_user} events each")
    run = quality_settings(settings, seed, *ports)
    async with ShopProducer(kafka, run) as producer:
        await send_replay(producer, split.train, items)
    stop = asyncio.Event()
    worker = WorkerProcess(run.derive(publish_recommendations=False), kafka)
    live = LiveModel(LiveConfig.from_settings(run))
    tasks: list[asyncio.Task] = [asyncio.create_task(worker.run(stop))]
    try:
        status = worker.worker.status

        def folded() -> bool:
            return status.events + status.duplicates + status.dead_letters >= len(split.train)

        await _until(folded, tasks[0], 600, "the training events folded")
        on_status("training (the trainer's own refresh) ...")
        train_s = (await train_product(run, kafka)).total_s
        tasks.append(asyncio.create_task(run_server(run, kafka, stop, live)))
        await _until(
            lambda: live.current is not None and len(live.features) >= len(split.seen), tasks[1], 120, "serving"
        )
        report = StreamingReport(len(chosen), per_user, train_s)
        await _rounds(run, kafka, live, split, chosen, per_user, _Baselines(split.train, items), report, on_status)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return report


async def _rounds(
    run: Settings,
    kafka: KafkaConnection,
    live: LiveModel,
    split: WindowSplit,
    chosen: list[str],
    per_user: int,
    baselines: _Baselines,
    report: StreamingReport,
    on_status: Callable[[str], None],
) -> None:
    """Per round: every user still in the window is asked, then sends their next event, folded before the next round."""
    scores = report.scores = {name: NextEventScore() for name in (REAL_TIME, BATCH, *SESSION_PEERS, KNN, POPULARITY)}
    had = {user: set(split.seen[user]) for user in chosen}
    clicks: dict[str, list[str]] = {user: [] for user in chosen}
    for event in split.train:  # time order
        if event.user_id in clicks:
            clicks[event.user_id].append(event.item_id)
    folded = Counter(e.user_id for e in split.train)
    base = f"http://{run.api_host}:{run.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http, ShopProducer(kafka, run) as producer:
        batch = {user: await _ask(http, user, K + len(had[user]) + per_user) for user in chosen}
        for round_no in range(per_user):
            due = [user for user in chosen if round_no < len(split.windows[user])]
            for user in due:
                event = split.windows[user][round_no]
                if event.item_id not in had[user]:
                    scores[REAL_TIME].add(
                        first_new(await _ask(http, user, K + len(had[user])), had[user], K), event.item_id
                    )
                    scores[BATCH].add(first_new(batch[user], had[user], K), event.item_id)
                    for name in SESSION_PEERS:
                        scores[name].add(baselines.session(name, clicks[user], event.ts, had[user]), event.item_id)
                    scores[KNN].add(baselines.knn(clicks[user], had[user]), event.item_id)
                    scores[POPULARITY].add(baselines.popularity(had[user]), event.item_id)
                await producer.send_event(event)
                had[user].add(event.item_id)
                clicks[user].append(event.item_id)
                folded[user] += 1
            await producer.flush()
            if not await _reflected(live, {user: folded[user] for user in due}):
                report.late_rounds += 1
            on_status(f"round {round_no + 1}: {len(due):,} users; {scores[REAL_TIME].events:,} events scored")


async def _ask(http: httpx.AsyncClient, user: str, k: int) -> list[str]:
    answer = await http.get(f"/recommendations/{quote(user, safe='')}", params={"k": k})
    answer.raise_for_status()
    return [entry["item_id"] for entry in answer.json()["items"]]


async def _reflected(live: LiveModel, counts: dict[str, int]) -> bool:
    """Whether the server's feature replica holds each user's `counts` events within FOLD_WAIT_S."""
    deadline = time.monotonic() + FOLD_WAIT_S
    while time.monotonic() < deadline:
        if all((f := live.features.get(u)) is not None and f.clicks + f.purchases >= n for u, n in counts.items()):
            return True
        await asyncio.sleep(0.05)
    return False


async def _until(condition: Callable[[], bool], task: asyncio.Task, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if task.done():
            task.result()
            raise RuntimeError(f"stopped before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
