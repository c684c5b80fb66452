"""One settings object per process, from `STREAMREC_*` variables and CLI flags."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T")


KAFKA_NAME = r"^[A-Za-z0-9._-]*$"  # what Kafka allows in a topic's name (a broker loops on others)


class SettingsError(ValueError):
    """A setting given a value outside its bounds; the message names each one."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> SettingsError:
        problems = "; ".join(
            f"STREAMREC_{'.'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        return cls(f"invalid setting: {problems}")


@dataclass(frozen=True)
class KafkaSettings:
    """The cluster, the topics streamrec creates and how every client reaches them."""

    bootstrap: str | None
    broker_host: str
    broker_port: int
    topic_prefix: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int
    app_id: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: SecretStr
    ssl_cafile: Path | None
    ssl_certfile: Path | None
    ssl_keyfile: Path | None
    events_retention_hours: float
    deadletter_retention_hours: float

    def topic(self, name: str) -> str:
        """A topic or group name with the configured prefix."""
        return f"{self.topic_prefix}{name}"


@dataclass(frozen=True)
class AccessSettings:
    """The secrets that guard the HTTP endpoints and the users' ids."""

    api_keys: SecretStr
    admin_api_keys: SecretStr
    pseudonymise_key: SecretStr


@dataclass(frozen=True)
class WorkerSettings:
    """A stream worker's HTTP address, engine and commit rhythm."""

    host: str
    port: int
    metrics_port: int
    advertised_url: str | None
    engine: str
    commit_interval_s: float
    processing_guarantee: str
    max_batch_events: int
    deadletter_payload: bool

    @property
    def url(self) -> str:
        """How other workers reach this one; a wildcard listen address is
        replaced by the hostname (a container's name in docker compose)."""
        if self.advertised_url:
            return self.advertised_url
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class PublisherSettings:
    """The real-time publisher of the recommendations topic."""

    publish_recommendations: bool
    k: int
    processes: int
    interval_s: float
    explanations: bool
    placement: str


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API's address and the bounds and defaults of its answers."""

    host: str
    port: int
    metrics_port: int
    max_k: int
    buy_again_half_life_s: float


@dataclass(frozen=True)
class TuneSettings:
    """Whether and to what target the index of a new version is tuned."""

    index_tune: bool
    index_threads: int
    index_batch_size: int
    recall: float
    p99_ms: float
    bytes_per_item: float
    prefer: str
    queries: int
    k: int
    affinity_half_life_s: float  # users' queries are encoded as served


@dataclass(frozen=True)
class TrainerSettings:
    """The trainer's data window, refresh plan, gate and what it keeps."""

    max_events: int
    cache_max_age_days: float
    full_every: int
    warm_replay: float
    warm_epochs: int
    warm_lr: float
    first_budget_s: float
    seed: int
    gate_tolerance: float
    models_keep: int
    model_neighbours: int
    model_ease_max_items: int
    tune_queries: int


class Settings(BaseSettings):
    """Every knob of streamrec, with a default that works on a laptop.

    Each field's description is its one-line documentation: it appears in the
    settings table of docs/configuration.md (`streamrec settings`) and in `--help`.
    """

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="Existing Kafka cluster (host:port,...); unset: local commands start the embedded broker."
    )
    broker_host: str = Field("127.0.0.1", description="Address the embedded broker listens on.")
    broker_port: int = Field(9092, description="Port the embedded broker listens on.")
    topic_prefix: str = Field(
        "", max_length=100, pattern=KAFKA_NAME, description="Prefix prepended to every topic and consumer group name."
    )
    partitions: int = Field(
        8, ge=1, le=1024, description="Partitions of the event topics; the most workers that share the load."
    )
    replication_factor: int = Field(
        0, ge=0, le=32, description="Replication factor of topics streamrec creates; 0: min(3, brokers in the cluster)."
    )
    min_insync_replicas: int = Field(
        0,
        ge=0,
        le=32,
        description="min.insync.replicas of topics streamrec creates; 0: the replication factor - 1 (at least 1).",
    )
    app_id: str = Field(
        "streamrec",
        min_length=1,
        max_length=100,
        pattern=KAFKA_NAME,
        description="Application id: names the worker group and its internal topics.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with a SASL_* protocol): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (a secret: set it from a vault).")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle that signs the brokers' certificates (with SSL/SASL_SSL); unset: system CAs."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate for mutual TLS (PEM).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Private key of the client certificate (PEM).")
    events_retention_hours: float = Field(
        168.0,
        ge=0,
        description="Retention of the event topics streamrec creates (clicks, purchases); 0: the broker's default.",
    )
    deadletter_retention_hours: float = Field(
        168.0, ge=0, description="Retention of the dead-letter topic streamrec creates; 0: the broker's default."
    )

    # --- worker ------------------------------------------------------------
    worker_host: str = Field("127.0.0.1", description="Worker HTTP address (GET /users/{user_id}).")
    worker_port: int = Field(6066, description="Worker HTTP port.")
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Serve the worker's /metrics on this port only (internal); 0: on worker_port."
    )
    worker_advertised_url: str | None = Field(
        None,
        description=(
            "URL other workers use to reach this one; "
            "default http://worker_host:worker_port (hostname when listening on 0.0.0.0)."
        ),
    )
    engine: Literal["batch", "faust"] = Field(
        "batch",
        description=(
            "Stream engine of `streamrec worker`: batch (aiokafka batches, the fastest) or faust "
            "(the same agents and tables on a faust-streaming app; pip install streamrec[faust])."
        ),
    )
    commit_interval_s: float = Field(
        1.0,
        gt=0,
        description=(
            "Time between changelog flushes and offset commits: "
            "longer coalesces more writes, shorter replays less after a crash."
        ),
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description=(
            "at_least_once: changelog rows, then input offsets (a crash replays; event ids absorb it). "
            "exactly_once: each commit's rows, dead letters, re-routes and offsets in one Kafka "
            "transaction (batch engine, brokers with transactions: Apache Kafka, not tansu)."
        ),
    )
    max_batch_events: int = Field(
        5_000,
        ge=1,
        description=(
            "Most Kafka records taken into one processing batch; the real-time publisher gets a turn "
            "between batches (5,000: about 0.1 s of folding)."
        ),
    )
    deadletter_payload: bool = Field(
        True,
        description="Dead letters carry the rejected value (cut to 64 KiB); false: only the reason and the origin.",
    )

    # --- event limits ------------------------------------------------------
    max_value_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_572_864,  # a re-routed value must fit the topics' max.message.bytes (2 MiB) with its key and headers
        description="Largest accepted Kafka value; larger ones are dead-lettered.",
    )
    max_batch_elements: int = Field(1000, ge=1, description="Most events in one array value.")
    max_id_chars: int = Field(256, ge=8, description="Longest accepted user, item, session or event id.")
    max_text_chars: int = Field(1000, ge=16, description="Longest accepted title or query.")
    max_future_s: float = Field(
        86_400.0,
        ge=0,
        description="How far past the wall clock an event's or item's ts may lie; later ones are dead-lettered.",
    )

    # --- user features -----------------------------------------------------
    recent_items_max: int = Field(50, ge=1, le=10_000, description="Recent interactions kept per user.")
    purchased_items_max: int = Field(200, ge=1, le=100_000, description="Purchased item ids kept per user.")
    categories_max: int = Field(50, ge=1, le=10_000, description="Category affinities kept per user (weakest dropped).")
    dedup_window: int = Field(
        256, ge=1, le=100_000, description="Recent event ids remembered per user to absorb duplicates."
    )
    affinity_half_life_s: float = Field(86_400.0, gt=0, description="Half-life of a user's category affinity.")
    purchase_weight: float = Field(
        3.0, gt=0, description="Weight of a purchase relative to a click (affinity, training)."
    )
    buy_again_half_life_s: float = Field(
        180 * 86_400.0,
        gt=0,
        description="Buy again: a purchase's weight halves every this many seconds before the user's latest event.",
    )

    # --- item statistics ---------------------------------------------------
    popularity_bucket_s: int = Field(3600, ge=1, description="Width of an item popularity window bucket.")
    popularity_buckets: int = Field(24, ge=1, le=10_000, description="Popularity buckets kept per item (the window).")

    # --- model (the two towers) ---------------------------------------------
    model_dim: int = Field(64, ge=4, le=1024, description="Embedding dimension of users, items and queries.")
    model_hidden: int = Field(128, ge=4, le=8192, description="Hidden width of each tower's MLP.")
    model_id_buckets: int = Field(
        1 << 16, ge=16, le=1 << 24, description="Hash buckets for item ids (two rows per id)."
    )
    model_text_buckets: int = Field(
        1 << 16, ge=16, le=1 << 24, description="Hash buckets for title/query words and trigrams."
    )
    model_max_recent: int = Field(30, ge=1, le=1000, description="Recent interactions the user tower reads.")
    model_neighbours: int = Field(
        100,
        ge=0,
        le=10_000,
        description=(
            "Item neighbours kept per item: a second source blended with the towers; the trainer picks its kind "
            "(co-occurrence or EASE) and weight on validation users; 0: towers only."
        ),
    )
    model_ease_max_items: int = Field(
        15_000,
        ge=0,
        le=50_000,
        description=(
            "Largest catalog the trainer tries EASE neighbours on (a dense items x items inverse: 0.9 GB and about "
            "a minute per lambda at 15,000 items on 2 cores); above it, co-occurrence only. 0: never."
        ),
    )
    model_pooling: Literal["attention", "decay"] = Field(
        "attention", description="How the user tower pools recent items: attention or recency-decayed mean."
    )

    # --- trainer -----------------------------------------------------------
    train_epochs: int = Field(
        20, ge=1, le=1000, description="Most passes over the training examples (early stopping ends sooner)."
    )
    train_batch_size: int = Field(512, ge=8, le=65536, description="Examples per step (also the in-batch negatives).")
    train_lr: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    train_temperature: float = Field(0.05, gt=0, description="Softmax temperature of the sampled softmax.")
    train_random_negatives: int = Field(
        512, ge=0, le=65536, description="Uniform catalog negatives per step, beside the in-batch ones."
    )
    train_patience: int = Field(3, ge=1, description="Epochs without better validation recall before stopping.")
    train_budget_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Wall-clock seconds the towers may train: no epoch starts that would end past them (the first always "
            "runs). 0: no budget, only epochs and early stopping."
        ),
    )
    train_first_budget_s: float = Field(
        30.0,
        ge=0,
        description=(
            "The towers' time budget of the first version (none is served yet): a servable model soon after a "
            "start. A version cut short by it is refined at once, from its weights without the budget, and "
            "replaces it only if the gate passes. 0: the first version trains in full."
        ),
    )
    train_seed: int = Field(0, description="Seed of initialisation and sampling.")
    train_max_events: int = Field(
        2_000_000, ge=100, description="Newest events the trainer keeps and learns from (its data window)."
    )
    train_full_every: int = Field(
        6,
        ge=1,
        le=1000,
        description=(
            "Every Nth refresh retrains from scratch; the others continue from the current version's weights on "
            "the new events (a warm refresh). 1: always from scratch. A changed model shape forces a full one."
        ),
    )
    train_warm_replay: float = Field(
        1.0, ge=0, le=100, description="Older events a warm refresh learns from per new event (against forgetting)."
    )
    train_warm_epochs: int = Field(1, ge=1, le=1000, description="Most passes of a warm refresh over its examples.")
    train_warm_lr: float = Field(
        3e-4, gt=0, description="Learning rate of a warm refresh: small steps from trained weights."
    )
    train_gate_tolerance: float = Field(
        0.0, ge=0, le=1, description="A new version becomes current if its test recall@20 >= the current's minus this."
    )
    cache_max_age_days: float = Field(
        0.0,
        ge=0,
        description="Delete cached events older than this (wall clock) from the trainer's cache; 0: keep the window.",
    )
    models_keep: int = Field(5, ge=1, le=1000, description="Model versions kept on disk (the current one always).")

    # --- index and serving -------------------------------------------------
    api_host: str = Field("127.0.0.1", description="HTTP API address (`streamrec serve`).")
    api_port: int = Field(8000, description="HTTP API port.")
    api_metrics_port: int = Field(
        0, ge=0, le=65535, description="Serve the API's /metrics on this port only (internal); 0: on api_port."
    )
    index_kind: Literal["flat", "ivf_flat", "ivf_pq", "opq_ivf_pq", "hnsw", "sq8", "fp16", "cagra"] = Field(
        "hnsw",
        description=(
            "FAISS index kind: flat, ivf_flat, ivf_pq, opq_ivf_pq, hnsw, sq8, fp16, cagra (GPU; HNSW where "
            "there is none) (docs/serving.md)."
        ),
    )
    index_nlist: int = Field(0, ge=0, description="IVF lists; 0: about 4 sqrt(items).")
    index_nprobe: int = Field(16, ge=1, description="IVF lists searched per query (recall up, latency up).")
    index_pq_m: int = Field(0, ge=0, description="PQ sub-quantizers; 0: dim/2. A code is pq_m * pq_bits / 8 bytes.")
    index_pq_bits: int = Field(8, ge=1, le=16, description="Bits per PQ sub-quantizer (recall and training time up).")
    index_hnsw_m: int = Field(
        32, ge=4, le=256, description="HNSW links per node, CAGRA's graph degree (recall and memory up)."
    )
    index_ef_search: int = Field(
        64, ge=1, description="HNSW candidate list (CAGRA's itopk) per query (recall up, latency up)."
    )
    index_threads: int = Field(0, ge=0, description="FAISS threads; 0: FAISS's default (all cores).")
    index_batch_size: int = Field(
        256,
        ge=1,
        le=4096,
        description="Queries searched together by the real-time publisher (and timed so by the tuner).",
    )
    index_tune: bool = Field(
        False,
        description=(
            "The trainer tunes each new version's index once (its users' queries, the tune_* target) and keeps the "
            "choice in the manifest, which servers and workers build; a version without one is tuned where served."
        ),
    )
    tune_recall: float = Field(
        0.95, ge=0, le=1, description="Tuner target: recall@tune_k floor against exact search (0: none)."
    )
    tune_p99_ms: float = Field(0.0, ge=0, description="Tuner target: p99 single-query search ceiling in ms (0: none).")
    tune_bytes_per_item: float = Field(0.0, ge=0, description="Tuner target: index bytes per item ceiling (0: none).")
    tune_prefer: Literal["latency", "memory"] = Field(
        "latency", description="Among configurations meeting the target, the tuner picks the fastest or the smallest."
    )
    tune_queries: int = Field(500, ge=10, le=100_000, description="Sample user queries the tuner measures with.")
    tune_k: int = Field(10, ge=1, le=1000, description="The k of the tuner's recall@k.")
    publish_recommendations: bool = Field(
        True, description="Workers publish fresh recommendations on recs.recommendations after each user's events."
    )
    publish_k: int = Field(10, ge=1, le=1000, description="Items per published recommendation.")
    publisher_processes: int = Field(
        1,
        ge=0,
        le=64,
        description=(
            "Processes per worker that answer for its publisher (user tower, index search, sending), on other "
            "cores, each for its share of the users; each holds its own torch and index in memory. 0: on the "
            "worker's event loop."
        ),
    )
    publish_interval_s: float = Field(
        0.5,
        ge=0,
        le=3600,
        description="At most one publish per user per interval; a burst ends with a publish of the newest state.",
    )
    diversity: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Default diversity of recommendations (API and publisher): at most ceil(k * (1 - diversity)) items "
            "per category; 0: by score alone."
        ),
    )
    publish_explanations: bool = Field(
        False, description="Published recommendations carry `because` (the recent item each is most like)."
    )
    publish_placement: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The placement whose business rule the published recommendations follow (docs/rules.md).",
    )
    max_k: int = Field(200, ge=1, le=10_000, description="Largest k a request may ask for.")
    exclude_clicked: bool = Field(
        False, description="Also leave out items the user recently clicked (purchased ones always are)."
    )
    search_blend: float = Field(
        0.3, ge=0, le=1, description="Weight of the user's embedding in personalised search (0: plain semantic search)."
    )
    search_candidates: int = Field(100, ge=1, le=10_000, description="Semantic candidates re-ranked per search.")

    # --- access ------------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys that may read answers and metrics (X-API-Key header); unset: open.",
    )
    admin_api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys that may also read and forget users (GET, DELETE /users/{id}).",
    )

    # --- privacy ------------------------------------------------------------
    pseudonymise_key: SecretStr = Field(
        SecretStr(""),
        description=(
            "Key of the keyed hash (HMAC-SHA256) that replaces user ids before anything is stored; "
            "unset: ids are kept as sent. Changing it starts fresh profiles."
        ),
    )

    # --- local files -------------------------------------------------------
    data_dir: Path = Field(Path("data"), description="Models, caches and reports.")

    @classmethod
    def default(cls, name: str) -> Any:
        """A setting's default: the one source of the defaults of the configs
        built by `section`, so a component made without settings (a test, a
        benchmark) gets what the product runs with."""
        return cls.model_fields[name].default

    def derive(self, **updates: Any) -> Settings:
        """These settings with some values replaced, validated like the
        environment's (`model_copy` would let `train_epochs=0` through)."""
        try:
            return type(self).model_validate({**dict(self), **updates})
        except ValidationError as exc:
            raise SettingsError.from_validation(exc) from None

    def section(self, config: type[T], prefix: str = "", **overrides: Any) -> T:
        """A component's frozen config from the settings named `prefix + field`
        (or `field` where there is none); fields without a setting keep the
        component's default."""
        known = type(self).model_fields
        values = {}
        for name in config.__dataclass_fields__:  # type: ignore[attr-defined]
            setting = prefix + name if prefix + name in known else name
            if setting in known:
                values[name] = getattr(self, setting)
        return config(**{**values, **overrides})

    # Each component is handed its section, never the whole settings.

    @property
    def kafka(self) -> KafkaSettings:
        return self.section(KafkaSettings, "kafka_")

    @property
    def access(self) -> AccessSettings:
        return self.section(AccessSettings)

    @property
    def worker(self) -> WorkerSettings:
        return self.section(WorkerSettings, "worker_")

    @property
    def publisher(self) -> PublisherSettings:
        return self.section(PublisherSettings, "publish_", processes=self.publisher_processes)

    @property
    def api(self) -> ApiSettings:
        return self.section(ApiSettings, "api_")

    @property
    def tune(self) -> TuneSettings:
        return self.section(TuneSettings, "tune_")

    @property
    def trainer(self) -> TrainerSettings:
        return self.section(TrainerSettings, "train_")
