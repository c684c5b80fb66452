"""Model versions on disk: `$DATA_DIR/models/<version>/`, one of them current.

A version is written in a hidden temporary directory and renamed into place
when complete; `current` is a symbolic link replaced by an atomic rename. A
reader therefore sees the old version or the new one, never half of one, and
a crash at any point leaves the current version as it was. Weights are
safetensors; nothing is ever unpickled. `history.json` lists the versions
that were made current, oldest first, for `--rollback`.

The store knows arrays and a manifest, not the model: `streamrec.embeddings.versions`
turns a two-tower into what is stored here and back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

WEIGHTS, VECTORS, IDS, MANIFEST = "model.safetensors", "item_vectors.npy", "item_ids.json", "manifest.json"
POPULARITY = "item_popularity.npy"  # training interactions per item: cold-start answers
EXTRAS = "extras.safetensors"  # further arrays a model family keeps (the two-tower: item neighbours)
MODEL_NAME = "two-tower"  # the model family: the key of `recs.model-updates`
VERSION_NAME = re.compile(r"\d{8}T\d{6}Z(-\d{1,6})?")  # what new_version_name makes: never a path


def is_version_name(name: object) -> bool:
    """A well-formed version name (so never `..`, a path or empty)."""
    return isinstance(name, str) and VERSION_NAME.fullmatch(name) is not None


class StoreError(RuntimeError):
    """A store operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class DataWindow:
    """The events a version learned from."""

    events: int
    first_ts: float
    last_ts: float
    items: int
    train_examples: int
    test_examples: int
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> next offset


@dataclass(frozen=True)
class Blend:
    """How the item neighbours are blended with the towers, as the trainer chose it."""

    neighbours: int = 0  # neighbours kept per item; 0: the towers alone
    weight: float = 0.0
    valid_recall_by_weight: dict[str, float] = field(default_factory=dict)  # the choice's evidence
    weight_from: str | None = None  # a warm refresh keeps its base version's weight and source
    regularisation: float | None = None  # EASE's lambda; None: co-occurrence neighbours
    valid_recall_by_source: dict[str, float] = field(default_factory=dict)  # each source at its best weight
    recency_half_life: float = 0.0  # newer items after which a recent item's votes halve; 0: all alike
    valid_recall_by_half_life: dict[str, float] = field(default_factory=dict)  # each at its best weight
    transitions: float = 0.0  # the next-click weights' share beside EASE's (0: none)
    co_occurrence: str = "cosine"  # the kind without EASE: "cosine" or "rp3beta" (random walks)

    @property
    def source(self) -> str:
        """The kind of neighbours: "cosine" or "rp3beta" (co-occurrence), or "ease"."""
        return self.co_occurrence if self.regularisation is None else "ease"

    @property
    def source_name(self) -> str:
        """The kind with its parameters, as the evidence names it: "ease(300)+transitions(0.5)"."""
        if self.regularisation is None:
            return self.co_occurrence
        name = f"ease({self.regularisation:g})"
        return f"{name}+transitions({self.transitions:g})" if self.transitions else name

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["valid_recall@20_by_weight"] = values.pop("valid_recall_by_weight")
        return {**values, "source": self.source, "source_name": self.source_name}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Blend:
        values = dict(values)
        values["valid_recall_by_weight"] = values.pop("valid_recall@20_by_weight", {})
        return cls(**_known(cls, values))


@dataclass(frozen=True)
class Params:
    """What a version was trained with: the training loop's and the towers' configs, and the blend."""

    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    blend: Blend = field(default_factory=Blend)

    def to_json(self) -> dict[str, Any]:
        return {"train": self.train, "model": self.model, "blend": self.blend.to_json()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Params:
        return cls(values.get("train", {}), values.get("model", {}), Blend.from_json(values.get("blend", {})))


@dataclass(frozen=True)
class Training:
    """How a version was trained: a full or warm refresh, why, and where the time went."""

    kind: str = "full"
    why: str = ""
    base: str | None = None  # the version a warm refresh continued from
    warm_in_a_row: int = 0
    seconds: float = 0.0
    examples_s: float = 0.0
    train_s: float = 0.0
    neighbours_s: float = 0.0
    judge_s: float = 0.0
    epochs: int = 0
    cut_short: bool = False  # the first version's time budget ended the towers' training: a refinement is due
    examples_per_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: loss, validation figures


@dataclass(frozen=True)
class Gate:
    """The quality gate's decision: the new version against the current one on the same test users."""

    k: int = 20
    against: str | None = None  # the current version, None for the first
    current_recall: float | None = None
    new_recall: float | None = None
    passed: bool = True
    forced: bool = False  # made current although it did not pass


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: what a version is, what it learned from, how good it is.

    `metrics` maps a split ("test", "popularity", "valid") to named figures
    ("recall@20", ...); `params`, `training` and `gate` are the trainer's
    typed record. `index`, when the trainer tuned the version, is
    the index configuration every server and worker builds for it.
    """

    created: float
    model_config: dict[str, Any] = field(default_factory=dict)  # the towers' sizes, for loading
    model: str = MODEL_NAME
    version: str = ""  # filled in by the store
    device: str = "cpu"
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    data_window: DataWindow | None = None
    params: Params = field(default_factory=Params)
    training: Training = field(default_factory=Training)
    gate: Gate = field(default_factory=Gate)
    index: dict[str, Any] = field(default_factory=dict)

    def metric(self, split: str, name: str) -> float | None:
        """One figure, or None where the version has none (a random or benchmark version)."""
        return self.metrics.get(split, {}).get(name)

    def to_json(self) -> bytes:
        values = {**asdict(self), "params": self.params.to_json()}
        return json.dumps({k: v for k, v in values.items() if v is not None}, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        values = json.loads(raw)
        window = values.get("data_window")
        values["data_window"] = DataWindow(**_known(DataWindow, window)) if window else None
        values["params"] = Params.from_json(values.get("params") or {})
        values["training"] = Training(**_known(Training, values.get("training") or {}))
        values["gate"] = Gate(**_known(Gate, values.get("gate") or {}))
        return cls(**_known(cls, values))


def _known(record: type, values: dict[str, Any]) -> dict[str, Any]:
    """The fields `record` has: a manifest written by a newer version still reads."""
    names = {f.name for f in fields(record)}
    return {k: v for k, v in values.items() if k in names}


@dataclass(frozen=True)
class StoredVersion:
    """A version's files, read back: the weights by name, the catalog's vectors, the manifest."""

    version: str
    path: Path
    weights: dict[str, np.ndarray]
    item_ids: list[str]
    item_vectors: np.ndarray  # float32 [items, dim], L2-normalised
    item_popularity: np.ndarray  # float32 [items]
    manifest: Manifest
    extras: dict[str, np.ndarray]


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one: written beside it, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    _fsync_write(tmp, data)
    os.replace(tmp, path)


class ModelStore:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ModelStore:
        """The store of the versions under STREAMREC_DATA_DIR."""
        return cls(data_dir / "models")

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    def current(self) -> str | None:
        """The current version's name, or None before the first promotion."""
        try:
            return os.readlink(self.current_link)
        except FileNotFoundError:
            return None

    def versions(self) -> list[str]:
        """Complete versions, oldest first (names sort by creation time)."""
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        )

    def history(self) -> list[str]:
        path = self.root / "history.json"
        return json.loads(path.read_text()) if path.exists() else []

    def new_version_name(self) -> str:
        base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        taken = set(self.versions())
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        return name

    def publish(
        self,
        weights: dict[str, np.ndarray],
        item_ids: list[str],
        item_vectors: np.ndarray,
        item_popularity: np.ndarray,
        manifest: Manifest,
        *,
        extras: dict[str, np.ndarray] | None = None,
        promote: bool = True,
    ) -> str:
        """Write a complete new version and, with `promote`, make it current; returns its name."""
        version = self.new_version_name()
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a crashed publish
        tmp = self.root / f".tmp-{version}"
        tmp.mkdir()
        save_file({name: np.ascontiguousarray(array) for name, array in weights.items()}, str(tmp / WEIGHTS))
        for name, array in ((VECTORS, item_vectors), (POPULARITY, item_popularity)):
            with (tmp / name).open("wb") as handle:
                np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
        if extras:
            save_file({name: np.ascontiguousarray(array) for name, array in extras.items()}, str(tmp / EXTRAS))
        _fsync_write(tmp / IDS, json.dumps(item_ids).encode())
        _fsync_write(tmp / MANIFEST, replace(manifest, version=version).to_json())
        os.replace(tmp, self.root / version)
        if promote:
            self.promote(version)
        return version

    def record_index(self, version: str, index: dict[str, Any]) -> None:
        """Keep the index chosen for a version in its manifest (atomically; before it is promoted)."""
        manifest = self.load_manifest(version)
        write_atomically(self._directory(version) / MANIFEST, replace(manifest, index=index).to_json())

    def promote(self, version: str) -> None:
        """Make `version` current by an atomic rename of a fresh link."""
        if version not in self.versions():
            raise StoreError(f"no model version {version!r} in {self.root}")
        link = self.root / f".current-{os.getpid()}"
        link.unlink(missing_ok=True)
        os.symlink(version, link)
        os.replace(link, self.current_link)
        self._write_history([v for v in self.history() if v != version] + [version])

    def _write_history(self, versions: list[str]) -> None:
        write_atomically(self.root / "history.json", json.dumps(versions).encode())

    def rollback(self) -> str:
        """Make the version current before this one current again; returns it."""
        current, history = self.current(), self.history()
        earlier = [v for v in history[:-1] if v in self.versions() and v != current]
        if not earlier:
            raise StoreError("no earlier version to roll back to")
        previous = earlier[-1]
        self.promote(previous)
        # The rolled-back version leaves the history: a second rollback goes further back.
        self._write_history([v for v in self.history() if v != current])
        return previous

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond `keep`, never the current one."""
        current = self.current()
        removable = [v for v in self.versions() if v != current]
        doomed = removable[: max(0, len(removable) - max(keep - 1, 0))]
        for version in doomed:
            shutil.rmtree(self.root / version, ignore_errors=True)
        return doomed

    def _directory(self, version: str) -> Path:
        """A version's directory; a malformed name (a path, `..`) is refused before it touches the disk."""
        if not is_version_name(version):
            raise StoreError(f"{version!r:.80} is not a model version name (like 20260101T120000Z)")
        return self.root / version

    def load_manifest(self, version: str) -> Manifest:
        path = self._directory(version) / MANIFEST
        if not path.exists():
            raise StoreError(f"no model version {version!r} in {self.root}")
        return Manifest.from_json(path.read_bytes())

    def load(self, version: str | None = None) -> StoredVersion:
        """A version's files (default: the current version's)."""
        version = version or self.current()
        if version is None:
            raise StoreError(f"no current model in {self.root}; run `streamrec train` first")
        path = self._directory(version)
        manifest = self.load_manifest(version)
        return StoredVersion(
            version,
            path,
            load_file(str(path / WEIGHTS)),
            json.loads((path / IDS).read_text()),
            np.load(path / VECTORS, allow_pickle=False),
            np.load(path / POPULARITY, allow_pickle=False),
            manifest,
            load_file(str(path / EXTRAS)) if (path / EXTRAS).exists() else {},
        )
