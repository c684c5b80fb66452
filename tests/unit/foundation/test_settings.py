from __future__ import annotations

from dataclasses import dataclass

import pytest

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
