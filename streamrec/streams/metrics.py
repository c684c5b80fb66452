"""Prometheus metrics of a worker, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streamrec.streams.agents import Outcome


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "streamrec_worker_events",
            "Records by outcome: event, item (catalog), duplicate, deadletter, rerouted, forget.",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "streamrec_worker_batch_seconds",
            "Time to fold one fetched batch into the tables.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.partitions = Gauge(
            "streamrec_worker_partitions", "Event partitions this worker owns.", registry=self.registry
        )
        self.lag = Gauge(
            "streamrec_worker_lag_records", "Records not yet processed in owned partitions.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count(self, outcome: Outcome) -> None:
        self.events.labels("event").inc(outcome.events)
        self.events.labels("item").inc(outcome.items)
        self.events.labels("duplicate").inc(outcome.duplicates)
        self.events.labels("deadletter").inc(len(outcome.dead_letters))
        self.events.labels("rerouted").inc(len(outcome.reroutes))
        self.events.labels("forget").inc(len(outcome.forgotten))
