"""`streamrec demo`: the whole system on one machine, with a live dashboard.

The broker (embedded unless STREAMREC_KAFKA_BOOTSTRAP is set), a stream worker
publishing real-time recommendations and simulated shop traffic run in this
process; the trainer (`streamrec train --every`) and the HTTP server
(`streamrec serve`) run as child processes, as they would be deployed, so
training never stalls the stream. Their logs go to DATA_DIR/demo/.
With `--duration` the demo stops by itself and writes a report (Markdown,
JSON and a PNG) saying whether a trained model, the API and published
recommendations were all reached, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamrec.broker import die_with_parent
from streamrec.foundation.http import API_KEY_HEADER, Access
from streamrec.foundation.kafka import KafkaConnection
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.processes import WorkerProcess, child_env
from streamrec.shop.producer import ShopProducer
from streamrec.shop.shoppers import shop_from_answers
from streamrec.shop.simulate import Shop, ShopConfig, send_traffic

FIVE_MINUTES_S = 300.0
# The simulated shop's producer batches this long on the embedded tansu: its
# memory storage lists every batch a partition holds on each fetch, so one
# batch per event made every fetch slower as the demo ran (`streamrec bench
# broker`); fewer, larger batches slow that growth down (the worker fetches
# each new batch and each fetch lists them all: about the square of the factor).
EMBEDDED_LINGER_MS = 200
# For the same reason its topics have one partition there (`cli.common.for_one_worker`).
DRIFT_WINDOW_MIN = 10  # minutes compared at the start and the end of a run, for latency drift
# The demo's trainer, unless the environment says otherwise: a few epochs over
# the newest events, so a version arrives within a couple of minutes, on one
# thread, so that training leaves the worker a core (with two threads the
# worker fell seconds behind while a run lasted).
DEMO_TRAINING = {"STREAMREC_TRAIN_EPOCHS": "3", "STREAMREC_TRAIN_MAX_EVENTS": "40000", "OMP_NUM_THREADS": "1"}


@dataclass
class Sample:
    t: float
    events_per_s: float
    publishes_per_s: float
    p50_ms: float
    p99_ms: float
    lag: int
    model_version: str | None
    backlog: int = 0  # users with a change the publisher has not published yet


@dataclass
class Milestones:
    """Seconds from the start until each part first worked."""

    trained_model: float | None = None
    api_serving: float | None = None
    recommendation_published: float | None = None  # by live popularity when before the first model
    first_event: float | None = None  # seen at the first commit: up to a commit interval after the fold
    model_recommendation: float | None = None  # the first one a model answered
    samples: list[Sample] = field(default_factory=list)
    latencies_by_minute: dict[int, list[float]] = field(default_factory=dict)  # every publish's, by minute of the run
    served_at: dict[str, float] = field(default_factory=dict)  # version -> wall time the publisher first served it

    def all_within(self, seconds: float) -> bool:
        reached = (self.trained_model, self.api_serving, self.recommendation_published)
        return all(t is not None and t <= seconds for t in reached)


class Child:
    """A `streamrec` sub-command in its own process, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.args, self.env = name, args, env
        self.log = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamrec.cli",
                *self.args,
                env=self.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        return self

    def state(self) -> str:
        if self.process is None or self.process.returncode is None:
            return "running"
        return f"exited ({self.process.returncode}), see {self.log}"

    async def stop(self) -> None:
        """SIGTERM (each command shuts down in order on it), then SIGKILL after 15 s."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


ModelInfo = tuple[str | None, float | None, float | None]  # version, its recall@20, popularity's


def _current_model(settings: Settings) -> ModelInfo:
    """The current version and its test recall@20 (and popularity's)."""
    store = ModelStore.in_data_dir(settings.data_dir)
    version = store.current()
    if version is None:
        return None, None, None
    manifest = store.load_manifest(version)
    return version, manifest.metric("test", "recall@20"), manifest.metric("popularity", "recall@20")


def dashboard(
    process: WorkerProcess, sample: Sample, model: ModelInfo, settings: Settings, children: list[Child], api_state: str
) -> Table:
    table = Table(title="streamrec demo (Ctrl-C stops)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    version, recall, popular = model
    worker, publisher = process.worker, process.publisher
    table.add_row("running for", f"{sample.t:,.0f} s")
    table.add_row("events/s", f"{sample.events_per_s:,.0f}" if worker.status.ready else "joining the group ...")
    table.add_row("events processed / consumer lag", f"{worker.status.events:,} / {sample.lag:,}")
    if version is None:
        table.add_row("model", "waiting for the first training run (needs a few thousand events)")
    else:
        table.add_row(
            "model", f"{version}: recall@20 {recall:.3f} (popularity {popular:.3f})" if recall is not None else version
        )
    if publisher is None or not publisher.status.published:
        table.add_row("recommendations published", "none yet")
    else:
        by = "live popularity, until the first model" if publisher.model_version is None else "the model"
        table.add_row(
            "recommendations published", f"{publisher.status.published:,} ({sample.publishes_per_s:,.0f}/s, by {by})"
        )
        table.add_row(
            "event → recommendation", f"p50 {sample.p50_ms:,.1f} ms, p99 {sample.p99_ms:,.1f} ms (last 2,000)"
        )
        table.add_row("publisher backlog", f"{sample.backlog:,} users waiting")
    table.add_row("API", f"http://{settings.api_host}:{settings.api_port}/docs  ({api_state})")
    table.add_row("try", f"curl http://{settings.api_host}:{settings.api_port}/recommendations/u1")
    for child in children:
        table.add_row(child.name, f"{child.state()}; log {child.log}")
    return table


async def _api_state(http: httpx.AsyncClient) -> str:
    try:
        answer = await http.get("/healthz")
    except httpx.HTTPError:
        return "starting"
    return "serving" if answer.status_code == 200 else "up, waiting for a model"


async def run_demo(
    settings: Settings,
    kafka: KafkaConnection,
    stop: asyncio.Event,
    *,
    rate: float,
    duration: float | None,
    train_every: str,
    console: Console,
    linger_ms: int = 10,
) -> Milestones:
    log_dir = settings.data_dir / "demo"
    env = child_env(settings, kafka)
    children = [
        # 10k events (20 s at the default rate) make a first model better than popularity.
        Child(
            "trainer", ["train", "--every", train_every, "--min-new-events", "10000"], {**DEMO_TRAINING, **env}, log_dir
        ),
        Child("server", ["serve"], env, log_dir),
    ]
    for child in children:
        await child.start()
    process = WorkerProcess(settings, kafka)
    worker_task = asyncio.create_task(process.run(stop))
    milestones = Milestones()
    started = time.monotonic()
    shop = Shop(ShopConfig())
    admin_key = Access.from_settings(settings.access).admin_key  # the shoppers start their experiment with it
    keyed = {API_KEY_HEADER: admin_key} if admin_key else {}
    async with (
        ShopProducer(kafka, settings, linger_ms=linger_ms) as producer,
        httpx.AsyncClient(base_url=f"http://{settings.api_host}:{settings.api_port}", timeout=2, headers=keyed) as http,
    ):
        traffic = asyncio.create_task(send_traffic(shop, producer, max_events=None, rate=rate))
        shoppers = asyncio.create_task(shop_from_answers(shop, producer, http, stop))
        last = (started, 0, 0)
        sample = Sample(0, 0, 0, 0, 0, 0, None)
        api_state, model = "starting", (None, None, None)
        try:
            with Live(
                dashboard(process, sample, model, settings, children, api_state), console=console, refresh_per_second=2
            ) as live:
                while not stop.is_set() and not traffic.done() and not worker_task.done():
                    if duration is not None and time.monotonic() - started >= duration:
                        break
                    await asyncio.sleep(1.0)
                    api_state = await _api_state(http)
                    model = _current_model(settings)
                    sample, last = _sample(process, model[0], started, last, milestones)
                    milestones.samples.append(sample)
                    _note_milestones(milestones, sample, api_state, process)
                    live.update(dashboard(process, sample, model, settings, children, api_state))
        finally:
            traffic.cancel()
            shoppers.cancel()
            await asyncio.gather(traffic, shoppers, return_exceptions=True)
            stop.set()
            await asyncio.gather(*(child.stop() for child in children))
            with contextlib.suppress(Exception):
                await worker_task
    return milestones


def _sample(
    process: WorkerProcess,
    model_version: str | None,
    started: float,
    last: tuple[float, int, int],
    milestones: Milestones,
) -> tuple[Sample, tuple[float, int, int]]:
    now = time.monotonic()
    worker, publisher = process.worker, process.publisher
    events = worker.status.events
    published = publisher.status.published if publisher is not None else 0
    then, last_events, last_published = last
    if published > last_published:  # this second's publishes are the newest latencies kept
        newest = list(islice(reversed(publisher.status.latencies_ms), published - last_published))
        milestones.latencies_by_minute.setdefault(int((now - started) // 60), []).extend(newest)
    p50, p99 = publisher.status.percentiles(last=2000) if publisher is not None else (0.0, 0.0)
    sample = Sample(
        round(now - started, 1),
        (events - last_events) / (now - then),
        (published - last_published) / (now - then),
        p50,
        p99,
        worker.lag(),
        model_version,
        publisher.waiting if publisher is not None else 0,
    )
    return sample, (now, events, published)


def _note_milestones(milestones: Milestones, sample: Sample, api_state: str, process: WorkerProcess) -> None:
    if milestones.trained_model is None and sample.model_version is not None:
        milestones.trained_model = sample.t
    if milestones.api_serving is None and api_state == "serving":
        milestones.api_serving = sample.t
    if milestones.first_event is None and process.worker.status.events:
        milestones.first_event = sample.t
    publisher = process.publisher
    if milestones.recommendation_published is None and publisher is not None and publisher.status.published:
        milestones.recommendation_published = sample.t
    if milestones.model_recommendation is None and publisher is not None and publisher.model_version is not None:
        if publisher.status.published > publisher.status.without_model:
            milestones.model_recommendation = sample.t
    served = publisher.model_version if publisher is not None else None
    if served is not None and served not in milestones.served_at:
        milestones.served_at[served] = time.time()


def freshness_of_models(milestones: Milestones, settings: Settings) -> list[dict]:
    """For each version served: how long after its events it was serving. The
    demo's events carry the wall clock, so a version's data window says when
    its newest event happened; the events since the previous version's newest
    waited from then until this version was served."""
    store = ModelStore.in_data_dir(settings.data_dir)
    kept = set(store.versions())  # a long run's trainer prunes its oldest versions
    rows, previous = [], None
    for version, served in sorted(milestones.served_at.items(), key=lambda vs: vs[1]):
        if version not in kept:
            continue
        window = store.load_manifest(version).data_window
        if window is None:
            continue
        oldest = window.first_ts if previous is None else max(previous, window.first_ts)
        rows.append(
            {
                "version": version,
                "served_at": round(served, 1),
                "newest_event_s": round(served - window.last_ts, 1),
                "oldest_new_event_s": round(served - oldest, 1),
                "mean_s": round(served - (window.last_ts + oldest) / 2, 1),
            }
        )
        previous = window.last_ts
    return rows


def write_report(milestones: Milestones, settings: Settings, rate: float) -> Path:
    """DATA_DIR/reports/demo.{md,json,png}: the milestones and the run's figures."""
    from streamrec.plots import demo_timeline

    reports = settings.data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    samples = milestones.samples
    steady = [s for s in samples if s.p99_ms > 0]
    summary = {
        "rate_events_per_s": rate,
        "seconds": samples[-1].t if samples else 0,
        "trained_model_s": milestones.trained_model,
        "api_serving_s": milestones.api_serving,
        "first_recommendation_s": milestones.recommendation_published,
        "first_event_s": milestones.first_event,
        "first_model_recommendation_s": milestones.model_recommendation,
        "all_within_five_minutes": milestones.all_within(FIVE_MINUTES_S),
        "model_versions": sorted({s.model_version for s in samples if s.model_version}),
        "median_events_per_s": _median([s.events_per_s for s in samples if s.events_per_s > 0]),
        "median_publishes_per_s": _median([s.publishes_per_s for s in samples if s.publishes_per_s > 0]),
        "median_p50_ms": _median([s.p50_ms for s in steady]),
        "median_p99_ms": _median([s.p99_ms for s in steady]),
        "event_to_served_model": freshness_of_models(milestones, settings),
        "minutes": latency_by_minute(milestones),
        **latency_drift(milestones),
    }
    (reports / "demo.json").write_text(json.dumps({**summary, "samples": [asdict(s) for s in samples]}, indent=1))
    plot = demo_timeline(reports / "demo.png", samples, milestones)
    verdict = "yes" if summary["all_within_five_minutes"] else "**no**"
    versions = ", ".join(summary["model_versions"]) or "none"
    lines = [
        "# streamrec demo report",
        "",
        f"- traffic: {rate:,.0f} events/s for {summary['seconds']:,.0f} s",
        f"- trained model after: {_seconds(milestones.trained_model)}; versions served: {versions}",
        f"- API serving after: {_seconds(milestones.api_serving)}",
        f"- first recommendation published after: {_seconds(milestones.recommendation_published)} "
        f"(first events committed after {_seconds(milestones.first_event)}; "
        f"first one by a model after {_seconds(milestones.model_recommendation)})",
        f"- all three within five minutes: {verdict}",
        f"- median events/s {summary['median_events_per_s']:,.0f}, "
        f"recommendations published/s {summary['median_publishes_per_s']:,.0f}",
        "- event → recommendation latency (median of per-second p50 / p99): "
        + (
            f"{summary['median_p50_ms']:,.1f} / {summary['median_p99_ms']:,.1f} ms"
            if milestones.recommendation_published is not None
            else "none published"
        ),
        *(
            f"- model {row['version']} served {row['newest_event_s']:,.0f} s after the newest event it learned, "
            f"{row['oldest_new_event_s']:,.0f} s after the oldest it was the first to learn "
            f"(mean over those events {row['mean_s']:,.0f} s)"
            for row in summary["event_to_served_model"]
        ),
        *_drift_lines(summary),
        "",
        f"![timeline]({plot.name})",
        "",
        "| minute | publishes | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(
            f"| {row['minute']} | {row['publishes']:,} | {row['p50_ms']:,.1f} | {row['p99_ms']:,.1f} |"
            for row in summary["minutes"]
        ),
        "",
    ]
    path = reports / "demo.md"
    path.write_text("\n".join(lines))
    return path


def latency_by_minute(milestones: Milestones) -> list[dict]:
    """p50/p99 of every publish of each minute of the run."""
    return [
        {
            "minute": minute,
            "publishes": len(kept),
            "p50_ms": round(float(np.percentile(kept, 50)), 1),
            "p99_ms": round(float(np.percentile(kept, 99)), 1),
        }
        for minute, kept in sorted(milestones.latencies_by_minute.items())
    ]


def latency_drift(milestones: Milestones) -> dict:
    """p99 of the first and the last DRIFT_WINDOW_MIN minutes after the first
    model-served minute (each half of that span when it is shorter): whether
    latency grows with uptime at a steady load."""
    if milestones.model_recommendation is None:
        return {}
    first_minute = int(milestones.model_recommendation // 60) + 1  # the first whole minute a model served
    minutes = [m for m in sorted(milestones.latencies_by_minute) if m >= first_minute]
    if len(minutes) < 2:
        return {}
    window = min(DRIFT_WINDOW_MIN, len(minutes) // 2)
    pooled = [
        np.concatenate([milestones.latencies_by_minute[m] for m in chosen])
        for chosen in (minutes[:window], minutes[-window:])
    ]
    first, last = (float(np.percentile(kept, 99)) for kept in pooled)
    return {
        "drift_window_min": window,
        "p99_first_ms": round(first, 1),
        "p99_last_ms": round(last, 1),
        "p99_last_over_first": round(last / first, 2) if first else None,
    }


def _drift_lines(summary: dict) -> list[str]:
    if "p99_first_ms" not in summary:
        return ["- latency drift: too short a run after the first model to say"]
    window = summary["drift_window_min"]
    return [
        f"- p99 of the first {window} minutes after the first model {summary['p99_first_ms']:,.1f} ms, "
        f"of the last {window} {summary['p99_last_ms']:,.1f} ms: x {summary['p99_last_over_first']}"
    ]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.0f} s"
