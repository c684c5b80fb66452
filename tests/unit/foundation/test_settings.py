from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import streamrec
from streamrec.foundation.settings import Settings, SettingsError


def test_derive_replaces_values_and_leaves_the_original_alone():
    base = Settings()
    derived = base.derive(train_epochs=2, worker_port=7000)
    assert (derived.train_epochs, derived.worker_port) == (2, 7000)
    assert base.train_epochs == Settings.default("train_epochs")


def test_derive_validates_like_the_environment():
    with pytest.raises(SettingsError, match="STREAMREC_TRAIN_EPOCHS=0"):
        Settings().derive(train_epochs=0)
    with pytest.raises(SettingsError, match="STREAMREC_ENGINE"):
        Settings().derive(engine="spark")


def test_derive_keeps_the_environments_values(monkeypatch):
    monkeypatch.setenv("STREAMREC_APP_ID", "shop")
    assert Settings().derive(worker_port=7001).app_id == "shop"


def test_a_section_takes_the_settings_with_its_prefix():
    @dataclass(frozen=True)
    class Publish:
        k: int = 1
        interval_s: float = 9.0
        unknown: str = "kept"

    section = Settings().derive(publish_k=7).section(Publish, "publish_")
    assert section == Publish(7, Settings.default("publish_interval_s"), "kept")


def test_each_section_reads_its_variables(monkeypatch):
    monkeypatch.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMREC_PARTITIONS", "3")
    monkeypatch.setenv("STREAMREC_WORKER_PORT", "7002")
    monkeypatch.setenv("STREAMREC_PUBLISH_K", "12")
    monkeypatch.setenv("STREAMREC_MAX_K", "50")
    monkeypatch.setenv("STREAMREC_TUNE_QUERIES", "40")
    monkeypatch.setenv("STREAMREC_TRAIN_FULL_EVERY", "2")
    settings = Settings()
    assert (settings.kafka.security_protocol, settings.kafka.partitions) == ("SASL_SSL", 3)
    assert settings.kafka.topic("shop.clicks") == "shop.clicks"
    assert settings.worker.port == 7002 and settings.worker.url == "http://127.0.0.1:7002"
    assert (settings.publisher.k, settings.api.max_k) == (12, 50)
    assert settings.tune.queries == 40 and settings.trainer.tune_queries == 40
    assert settings.trainer.full_every == 2


# Where a component may still be handed the whole settings: where a process
# (or a Faust app of a team's own) starts, and the builders of the configs.
ROOTS = {"from_settings", "mount", "spawn", "__init__:AnsweringProcess", "_serve", "_answer_when_asked"}
COMPONENTS = ("embeddings", "foundation", "index", "serving", "streams", "trainer")


def test_components_are_handed_their_sections_not_the_settings():
    """A function of a component taking `Settings` reads what it likes from
    96 fields; its section says what it depends on (and tests build less)."""
    handed = []
    for package in COMPONENTS:
        for path in sorted((Path(streamrec.__file__).parent / package).glob("*.py")):
            tree = ast.parse(path.read_text())
            for cls in [None, *[n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]]:
                body = tree.body if cls is None else cls.body
                for fn in (n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
                    takes = [a.annotation for a in fn.args.args + fn.args.kwonlyargs if a.annotation is not None]
                    name = fn.name if cls is None or fn.name != "__init__" else f"__init__:{cls.name}"
                    if any("Settings" == ast.unparse(t).split(" |")[0] for t in takes) and name not in ROOTS:
                        handed.append(f"{path.relative_to(path.parents[2])}: {name}")
    assert handed == []
