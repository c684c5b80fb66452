"""`streamrec bench ...`: each benchmark's command, beside the benchmarks.

Each prints its figures as a table; with --json its last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamrec.broker import kafka_connection
from streamrec.cli.common import (
    ApacheKafka,
    JsonLine,
    LogFile,
    add_measurements,
    broker_name,
    console,
    figure,
    for_one_worker,
    measurement_table,
    run_broker,
    show_result,
    training_progress,
    with_log_options,
)
from streamrec.foundation.settings import Settings

bench_app = typer.Typer(help="Benchmarks: each prints figures; with --json its last line is one JSON object.")


def _choices(text: str, allowed: set[str], option: str) -> tuple[str, ...]:
    """A comma-separated option's values, each one of `allowed`."""
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(chosen) - allowed
    if unknown or not chosen:
        raise typer.BadParameter(f"choose from {sorted(allowed)}, not {sorted(unknown) or text!r}", param_hint=option)
    return chosen


@bench_app.command("ingest")
def bench_ingest(
    events: Annotated[int, typer.Option(help="Events to push through.")] = 500_000,
    users: Annotated[int, typer.Option(help="Distinct users.")] = 100_000,
    items: Annotated[int, typer.Option(help="Distinct items.")] = 10_000,
    engine: Annotated[
        str, typer.Option(help="Engines to measure, comma-separated: batch, faust (each reads the same events).")
    ] = "batch",
    guarantee: Annotated[
        str,
        typer.Option(help="Processing guarantees, comma-separated: at_least_once, exactly_once (batch engine)."),
    ] = "at_least_once",
    as_json: JsonLine = False,
) -> None:
    """Events/s through one worker per engine and guarantee (durable state) beside raw aiokafka consume-and-decode."""
    from streamrec.bench.ingest import bench_ingest as run_bench

    engines = _choices(engine, {"batch", "faust"}, "--engine")
    guarantees = _choices(guarantee, {"at_least_once", "exactly_once"}, "--guarantee")
    if "faust" in engines and "exactly_once" in guarantees:
        raise typer.BadParameter("exactly_once runs on the batch engine only", param_hint="--guarantee")
    settings = Settings()
    console.print(f"producing {events} events over {users} users and {items} items ...")
    with kafka_connection(settings.kafka) as kafka:
        result = asyncio.run(run_bench(settings, kafka, events, users, items, engines, guarantees))
    table = Table("measure", "events/s", "ratio to raw")
    table.add_row("produce (ShopProducer, acks=all)", f"{result.produce_events_per_s:,.0f}", "")
    table.add_row("raw aiokafka consume + msgpack decode", f"{result.raw_events_per_s:,.0f}", "1.00")
    for label in result.events_per_s:
        table.add_row(
            f"{label}: validate, dedup, features, changelog, commit",
            f"{result.events_per_s[label]:,.0f}",
            f"{result.ratio(label):.3f}",
        )
    Console().print(table)
    if as_json:
        print(json.dumps(result.to_json()))


@bench_app.command("train")
def bench_train(
    events: Annotated[int, typer.Option(help="Simulated events in the log (the data window).")] = 1_000_000,
    new_events: Annotated[
        int, typer.Option(min=1, help="Of them, the newest: what the warm refresh is about.")
    ] = 50_000,
    users: Annotated[int, typer.Option(help="Simulated users.")] = 20_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 10_000,
    epochs: Annotated[
        int | None,
        typer.Option(help="Cap a full refresh's epochs (default: STREAMREC_TRAIN_EPOCHS with early stopping)."),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """A full refresh against a warm one on the same log: wall time, examples/s, test recall@20."""
    from streamrec.bench.train import bench_train as run_bench

    if not 0 < new_events < events:
        raise typer.BadParameter(f"--new-events must be between 1 and --events - 1 ({events - 1})")
    settings = Settings()
    if epochs is not None:
        settings = settings.derive(train_epochs=epochs)
    console.print(f"simulating and producing {events} events ({users} users, {items} items) ...")
    progress, update = training_progress()
    with kafka_connection(settings.kafka) as kafka, progress:
        result = asyncio.run(
            run_bench(
                settings, kafka, events, users, items, new_events, update, lambda phase: progress.console.print(phase)
            )
        )
    table = Table("measure", "full refresh", "warm refresh")
    for name in result["full"]:
        table.add_row(name, *(figure(result[kind][name]) for kind in ("full", "warm")))
    Console().print(table)
    console.print(
        f"warm / full: time {result['warm_to_full_time']:.3f}, recall@20 {result['warm_to_full_recall']:.3f} "
        f"(base version on the older events: {result['base_refresh_s']:,} s)"
    )
    if as_json:
        print(json.dumps(result))


@bench_app.command("index")
def bench_index(
    items: Annotated[int | None, typer.Option(help="One catalog size (default: 10k, 100k and 1M).")] = None,
    queries: Annotated[
        int, typer.Option(min=10, help="Queries per size (single-query timing uses the first 300).")
    ] = 1000,
    dim: Annotated[int, typer.Option(min=2, help="Vector dimensions.")] = 64,
    threads: Annotated[int | None, typer.Option(help="Search threads (default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of every configuration.")] = False,
) -> None:
    """Every index kind and its knobs against exact search at each catalog size, beside hnswlib."""
    from streamrec.bench.index import bench_index as run_bench
    from streamrec.index.cost import Target, choose
    from streamrec.plots import tuning_map

    settings = Settings()
    sizes = [items] if items else [10_000, 100_000, 1_000_000]
    k = 10

    def show(n: int, library: str, measured: list) -> None:
        table = measurement_table("", k)
        add_measurements(table, measured, f"{library} ")
        Console().print(table)

    results = run_bench(sizes, dim, queries, k, settings.index_batch_size, threads, on_measured=show)
    goals = {
        "recall@10 >= 0.95 and p99 < 2 ms (fastest)": Target(0.95, 2.0),
        "<= 32 bytes/item and recall@10 >= 0.85 (smallest)": Target(0.85, None, 32.0, prefer="memory"),
    }
    rows, targets = [], []
    for n, by_library in results.items():
        for goal, target in goals.items():
            best = choose(by_library["faiss"], target)
            targets.append({"items": n, "goal": goal, "met_by": best.as_row(k) if best else None})
            console.print(
                f"{n:,} items, {goal}: "
                + (
                    f"[green]{best.spec.label()}[/] (recall {best.recall_at_k:.3f}, "
                    f"p99 {best.p99_ms:.3f} ms, {best.bytes_per_item:.1f} B/item)"
                    if best
                    else "[red]not met[/]"
                )
            )
        path = tuning_map(
            settings.data_dir / "reports" / f"bench-index-{n}.png", by_library, None, f"{n:,} items, d={dim}"
        )
        console.print(f"plot written to {path}")
        rows += [dict(m.as_row(k), library=library) for library, ms in by_library.items() for m in ms]
    if as_json:
        print(json.dumps({"configs": rows, "targets": targets, "dim": dim, "queries": queries}))


@bench_app.command("broker")
def bench_broker(
    steps: Annotated[str, typer.Option(help="Batches the partition holds at each step, comma-separated.")] = (
        "1000,5000,20000"
    ),
    apache_kafka: Annotated[
        bool, typer.Option(help="Also a one-node Apache Kafka (needs java and mvn; the jars are fetched once).")
    ] = True,
    as_json: JsonLine = False,
) -> None:
    """Fetch time as a partition's log grows: the embedded tansu beside Apache Kafka."""
    from streamrec.bench.broker import fetch_times
    from streamrec.broker import EmbeddedBroker, free_port
    from streamrec.foundation.kafka import KafkaConnection

    counts = tuple(sorted({int(step) for step in steps.split(",") if step.strip()}))
    settings = Settings()
    brokers: dict[str, list] = {}
    console.print("tansu (embedded, memory storage):")
    with EmbeddedBroker(settings.broker_host, free_port(settings.broker_host)) as tansu:
        brokers["tansu"] = asyncio.run(fetch_times(KafkaConnection(tansu.bootstrap), counts, console.print))
    if apache_kafka:
        console.print("Apache Kafka (one node):")
        with run_broker(settings, True, settings.data_dir / "bench" / "kafka") as kafka:
            brokers["apache-kafka"] = asyncio.run(fetch_times(kafka, counts, console.print))
    table = Table("batches in the partition", *(f"{name} fetch ms" for name in brokers))
    for n, batches in enumerate(counts):
        table.add_row(f"{batches:,}", *(f"{found[n].fetch_ms:,.2f}" for found in brokers.values()))
    console.print(table)
    growth = {name: round(found[-1].fetch_ms / found[0].fetch_ms, 1) for name, found in brokers.items()}
    console.print("last step over first: " + ", ".join(f"{name} x {ratio}" for name, ratio in growth.items()))
    if as_json:
        print(
            json.dumps(
                {"brokers": {name: [vars(step) for step in found] for name, found in brokers.items()}, "growth": growth}
            )
        )


@bench_app.command("freshness")
def bench_freshness(
    users: Annotated[int, typer.Option(help="Distinct users sending events.")] = 100_000,
    items: Annotated[int, typer.Option(help="Catalog items in the index.")] = 100_000,
    rate: Annotated[float, typer.Option(help="Events per second in the paced phase.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the paced phase.")] = 30.0,
    burst: Annotated[int, typer.Option(help="Events sent at once to measure publishes/s.")] = 50_000,
    apache_kafka: ApacheKafka = False,
    as_json: JsonLine = False,
) -> None:
    """Event-to-published-recommendation latency at a steady rate, and publishes/s under a burst."""
    from streamrec.bench.freshness import bench_freshness as run_bench

    settings = for_one_worker(Settings(), apache_kafka)
    with run_broker(settings, apache_kafka, settings.data_dir / "bench" / "kafka") as kafka:
        result = asyncio.run(
            run_bench(
                settings,
                kafka,
                users=users,
                items=items,
                rate=rate,
                seconds=seconds,
                burst=burst,
                on_status=console.print,
            )
        )
    show_result({**result, "broker": broker_name(settings, apache_kafka)}, as_json)


@bench_app.command("http")
def bench_http(
    items: Annotated[int, typer.Option(help="Items in the served index.")] = 1_000_000,
    users: Annotated[int, typer.Option(help="Users with features in the server.")] = 10_000,
    requests: Annotated[int, typer.Option(help="Requests timed (after 100 to warm up).")] = 5000,
    rule: Annotated[
        str | None,
        typer.Option(help="A business rule's JSON (docs/rules.md): every other request is under it, timed apart."),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """p50/p99 of GET /recommendations over HTTP against a server holding N items (STREAMREC_INDEX_* knobs apply)."""
    from pydantic import ValidationError

    from streamrec.bench.http import bench_http as run_bench
    from streamrec.foundation.rules import Rule

    try:
        placement_rule = None if rule is None else Rule.model_validate_json(rule)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rule") from None
    settings = Settings()
    result = run_bench(settings, items, users, requests, rule=placement_rule, on_status=console.print)
    show_result(result, as_json)


@bench_app.command("scale")
def bench_scale(
    workers: Annotated[str, typer.Option(help="Worker process counts to run, comma-separated.")] = "1,2",
    users: Annotated[int, typer.Option(help="Distinct users.")] = 100_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 10_000,
    rate: Annotated[float, typer.Option(help="Steady events/s of the freshness phase.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the freshness phase.")] = 20.0,
    burst: Annotated[int, typer.Option(help="Events of the throughput burst.")] = 100_000,
    as_json: JsonLine = False,
) -> None:
    """1, 2 (...) worker processes against one broker: the group's events/s and publishes/s, and freshness p50/p99."""
    from streamrec.bench.scale import bench_scale as run_bench

    settings = Settings()
    counts = tuple(int(n) for n in workers.split(",") if n.strip())
    with kafka_connection(settings.kafka) as kafka:
        result = asyncio.run(
            run_bench(
                settings,
                kafka,
                counts=counts,
                users=users,
                items=items,
                rate=rate,
                seconds=seconds,
                burst=burst,
                on_status=console.print,
            )
        )
    table = Table("workers", "events/s", "x one", "publishes/s", "freshness p50 ms", "p99 ms")
    for n in result["events_per_s"]:
        table.add_row(
            n,
            f"{result['events_per_s'][n]:,}",
            f"{result['events_per_s_ratio'][n]:.2f}",
            f"{result['publishes_per_s'][n]:,.0f}",
            f"{result['freshness_p50_ms'][n]:.0f}",
            f"{result['freshness_p99_ms'][n]:.0f}",
        )
    Console().print(table)
    if as_json:
        print(json.dumps(result))


@bench_app.command("gpu")
def bench_gpu(
    events: Annotated[int, typer.Option(help="Simulated events the trainer learns from.")] = 200_000,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs on each device.")] = 2,
    sizes: Annotated[str, typer.Option(help="Catalog sizes of the index part, comma-separated.")] = "1000000,10000000",
    queries: Annotated[int, typer.Option(help="Queries per index, judged against the exact answer.")] = 2000,
    batches: Annotated[str, typer.Option(help="Users per publisher step, comma-separated.")] = "1000,10000,100000",
    publisher_items: Annotated[int, typer.Option(help="Items in the publisher step's index.")] = 1_000_000,
    cpu_threads: Annotated[int, typer.Option(min=1, help="CPU threads of the CPU side (2: the usual machine).")] = 2,
    out: Annotated[Path, typer.Option(help="The JSON's path.")] = Path("figures/bench-gpu.json"),
    as_json: JsonLine = False,
) -> None:
    """The trainer, the FAISS indexes and the publisher's step on CUDA beside the CPU (the CPU alone without a GPU)."""
    from streamrec.bench.gpu import bench_gpu as run_bench

    result = run_bench(
        events=events,
        epochs=epochs,
        sizes=[int(n) for n in sizes.split(",")],
        queries=queries,
        batches=[int(n) for n in batches.split(",")],
        publisher_items=publisher_items,
        cpu_threads=cpu_threads,
        settings=Settings(),
        on_status=console.print,
    )
    _gpu_tables(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"written: {out}")
    if as_json:
        print(json.dumps(result))


def _gpu_tables(result: dict) -> None:
    trainer = Table("trainer on", "examples/s", "s per epoch", "valid recall@20")
    for device in ("cpu", "cuda"):
        if device in result["trainer"]:
            t = result["trainer"][device]
            trainer.add_row(device, f"{t['examples_per_s']:,.0f}", f"{t['epoch_s']:.1f}", f"{t['valid_recall@20']:.4f}")
    index = Table("index", "items", "on", "recall@10", "p50 ms", "p99 ms", "batched ms/query", "build s", "bytes/item")
    for row in result["index"]:
        index.add_row(
            f"{row['kind']} {row['params']}",
            f"{row['items']:,}",
            row["device"],
            f"{row['recall_at_10']:.3f}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['batch_ms_per_query']:.4f}",
            f"{row['build_s']:.1f}",
            f"{row['bytes_per_item']:.0f}",
        )
    publisher = Table("publisher on", "users", "encode s", "tower s", "search s", "users/s")
    for row in result["publisher"]:
        publisher.add_row(
            row["device"],
            f"{row['users']:,}",
            f"{row['encode_s']:.3f}",
            f"{row['tower_s']:.3f}",
            f"{row['search_s']:.3f}",
            f"{row['users_per_s']:,.0f}",
        )
    for table in (trainer, index, publisher):
        Console().print(table)


@bench_app.command("quality")
@with_log_options
def bench_quality(
    log: LogFile,
    seeds: Annotated[int, typer.Option(min=1, max=10, help="Product runs with training seeds 0..N-1.")] = 1,
    peers: Annotated[bool, typer.Option(help="Also tune and run the classical peers (the `peers` extra).")] = True,
    out: Annotated[Path, typer.Option(help="Directory of the JSON and the plot.")] = Path("figures"),
    as_json: JsonLine = False,
) -> None:
    """The product (replay -> worker -> train -> API) against tuned EASE, ALS, BPR, item-kNN, BM25 and popularity,
    on each user's latest 20% of events: recall@K, NDCG@20, coverage, diversity, training time; a table, a plot
    and JSON."""
    from streamrec.bench.quality import PRODUCT, write_figures
    from streamrec.bench.quality import bench_quality as run_bench

    settings = Settings()
    if peers:
        try:
            import implicit  # noqa: F401
        except ImportError:
            console.print("[red]error:[/] the peers need the `peers` extra: pip install -e '.[peers]' (or --no-peers)")
            raise typer.Exit(2) from None
    events, catalog = log.read(settings)
    ports = (settings.api_port, settings.worker_port)
    with kafka_connection(settings.kafka) as kafka:
        report = asyncio.run(
            run_bench(settings, kafka, events, catalog, seeds=seeds, peers=peers, ports=ports, on_status=console.print)
        )
    _quality_table(report, PRODUCT)
    summary = report.to_json()
    if summary["best_peer"]:
        console.print(
            f"{PRODUCT} recall@20 {summary['product_recall@20_mean']:.4f} "
            f"(spread {summary['product_recall@20_spread']:.4f} over {seeds} seeds) = "
            f"{summary['ratio_to_best_peer']:.3f} x the best peer ({summary['best_peer']}), per seed "
            f"{summary['ratio_to_best_peer_per_seed']}; target >= 1.10 (no seed below 1.05)"
        )
    title = f"{log.events_csv.name}: each user's newest 20%, new items"
    # The second copy is the console's: its Quality page shows DATA_DIR/reports.
    paths = [*write_figures(report, out, title), *write_figures(report, settings.data_dir / "reports", title)]
    console.print(f"written: {', '.join(str(p) for p in paths)}")
    if as_json:
        print(json.dumps(summary))


@bench_app.command("streaming")
@with_log_options
def bench_streaming(
    log: LogFile,
    users: Annotated[int, typer.Option(min=1, max=100_000, help="Test users (drawn from those with a window).")] = 500,
    per_user: Annotated[int, typer.Option(min=1, max=1000, help="Window events sent per test user.")] = 10,
    seed: Annotated[int, typer.Option(help="Training seed and the draw of test users.")] = 0,
    sessions: Annotated[
        bool,
        typer.Option(
            help="The log's users are anonymous sessions: those that begin in its last day are the test ones, "
            "each scored from its second click."
        ),
    ] = False,
    as_json: JsonLine = False,
) -> None:
    """Does the real-time path help? The product trained on each user's events before their window, then the
    window's events sent through the broker; before each, the API's answer: next-event HR@20 and MRR@20, against
    the product's answer from before the window (batch), V-SkNN, STAN, item-kNN from the newest item and popularity."""
    from streamrec.bench.streaming import bench_streaming as run_bench

    settings = Settings()
    events, catalog = log.read(settings)
    ports = (settings.api_port, settings.worker_port)
    with kafka_connection(settings.kafka) as kafka:
        report = asyncio.run(
            run_bench(
                settings,
                kafka,
                events,
                catalog,
                users=users,
                per_user=per_user,
                seed=seed,
                ports=ports,
                sessions=sessions,
                on_status=console.print,
            )
        )
    summary = report.to_json()
    table = Table("system", "HR@20", "MRR@20")
    for name, score in summary["systems"].items():
        table.add_row(name, f"{score['hr@20']:.4f}", f"{score['mrr@20']:.4f}")
    Console().print(table)
    console.print(
        f"{summary['events']:,} next events of {summary['users']:,} users scored; real time over batch: "
        f"{summary['real_time_over_batch_hr@20']} x HR@20, over V-SkNN {summary['real_time_over_V-SkNN_hr@20']} x, "
        f"over STAN {summary['real_time_over_STAN_hr@20']} x; trained in {summary['train_s']} s"
        + (f"; {summary['late_rounds']} rounds not folded in time" if summary["late_rounds"] else "")
    )
    if as_json:
        print(json.dumps(summary))


@bench_app.command("baskets")
@with_log_options
def bench_baskets(
    log: LogFile,
    k: Annotated[int, typer.Option(min=1, max=200, help="Items listed per item.")] = 10,
    as_json: JsonLine = False,
) -> None:
    """Bought together on the log's newest tenth of time: is each basket's pair among each other's first k?
    Against the users' co-occurrence and popularity."""
    from streamrec.bench.baskets import bench_baskets as run_bench

    events, catalog = log.read(Settings())
    try:
        report = run_bench(events, catalog, k)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    table = Table("system", f"HR@{k} (all pairs)", f"HR@{k} (per basket)")
    for name, rate in report.hit_rate.items():
        table.add_row(name, f"{rate:.4f}", f"{report.per_basket[name]:.4f}")
    Console().print(table)
    console.print(
        f"{report.train_baskets:,} baskets learned from (in {report.build_s} s), {report.test_baskets:,} asked: "
        f"{report.pairs:,} ordered pairs"
    )
    if as_json:
        print(json.dumps(report.to_json(k)))


def _quality_table(report: Any, product: str) -> None:
    """Each system's figures; the product's as the mean over its seeds, min-max beneath, with its training time."""
    table = Table("system", "recall@10", "recall@20", "recall@50", "NDCG@20", "coverage@20", "diversity@20", "train s")
    # The product's training time: to the version served, and to its first servable one.
    spread = report.product_spread()
    for name, quality in report.systems.items():
        seconds = f"{statistics.mean(report.train_s[name]):.1f}" if name in report.train_s else ""
        if name == product:
            cells = [f"{spread[m]['mean']:.4f}\n{spread[m]['min']:.4f}-{spread[m]['max']:.4f}" for m in spread]
            seconds += f"\nfirst {statistics.mean(report.first_servable_s):.1f}"
            table.add_row(
                f"[bold]{name}[/] (mean of {len(report.product_runs)})",
                *cells,
                f"{quality.coverage:.3f}",
                f"{quality.diversity:.3f}",
                seconds,
            )
            continue
        table.add_row(
            name,
            *(f"{quality.recall[k]:.4f}" for k in (10, 20, 50)),
            f"{quality.ndcg[20]:.4f}",
            f"{quality.coverage:.3f}",
            f"{quality.diversity:.3f}",
            seconds,
        )
    Console().print(table)
    if report.buy_again:
        again = Table(
            f"buy again ({next(iter(report.buy_again.values())).users:,} users re-bought)", "recall@10", "recall@20"
        )
        for name, quality in report.buy_again.items():
            again.add_row(name, f"{quality.recall[10]:.4f}", f"{quality.recall[20]:.4f}")
        Console().print(again)
    for name, params in report.params.items():
        console.print(f"{name}: chosen on the validation window: {params or 'nothing to tune'}")
