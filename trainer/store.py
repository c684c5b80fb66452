"""Model versions on disk: `$DATA_DIR/models/<version>/`, one of them current.

A version is written in a hidden temporary directory and renamed into place
when complete; `current` is a symbolic link replaced by an atomic rename. A
reader therefore sees the old version or the new one, never half of one, and
a crash at any point leaves the current version as it was. Weights are
safetensors; nothing is ever unpickled. `history.json` lists the versions
that were made current, oldest first, for `--rollback`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from embeddings.encoding import ModelConfig
from embeddings.model import TwoTower

WEIGHTS, VECTORS, IDS, MANIFEST = "model.safetensors", "item_vectors.npy", "item_ids.json", "manifest.json"
POPULARITY = "item_popularity.npy"  # training interactions per item: cold-start answers


class StoreError(RuntimeError):
    """A store operation that cannot be done; the message says why."""


@dataclass
class ModelVersion:
    """A published version, loaded: the towers, the catalog's vectors, the manifest."""

    version: str
    path: Path
    model: TwoTower
    config: ModelConfig
    item_ids: list[str]
    item_vectors: np.ndarray  # float32 [items, dim], L2-normalised
    item_popularity: np.ndarray  # float32 [items]
    manifest: dict


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
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

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

    def write(self, version: str, model: TwoTower, item_ids: list[str], item_vectors: np.ndarray, manifest: dict,
              popularity: np.ndarray | None = None) -> Path:  # fmt: skip
        """Write a complete version directory (not yet current)."""
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a crashed publish
        tmp = self.root / f".tmp-{version}"
        tmp.mkdir()
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        popularity = np.zeros(len(item_ids), dtype=np.float32) if popularity is None else popularity
        for name, array in ((VECTORS, item_vectors), (POPULARITY, popularity)):
            with (tmp / name).open("wb") as handle:
                np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
        _fsync_write(tmp / IDS, json.dumps(item_ids).encode())
        manifest = {**manifest, "version": version, "model_config": model.config.to_dict()}
        _fsync_write(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
        final = self.root / version
        os.replace(tmp, final)
        return final

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

    def load_manifest(self, version: str) -> dict:
        path = self.root / version / MANIFEST
        if not path.exists():
            raise StoreError(f"no model version {version!r} in {self.root}")
        return json.loads(path.read_text())

    def load(self, version: str | None = None, device: torch.device | str = "cpu") -> ModelVersion:
        """A version (default: the current one) ready to serve."""
        version = version or self.current()
        if version is None:
            raise StoreError(f"no current model in {self.root}; run `streamrec train` first")
        path = self.root / version
        manifest = self.load_manifest(version)
        config = ModelConfig.from_dict(manifest["model_config"])
        model = TwoTower(config)
        model.load_state_dict(load_file(str(path / WEIGHTS)))
        model.to(device).eval()
        vectors = np.load(path / VECTORS, allow_pickle=False)
        popularity = np.load(path / POPULARITY, allow_pickle=False)
        ids = json.loads((path / IDS).read_text())
        return ModelVersion(version, path, model, config, ids, vectors, popularity, manifest)
