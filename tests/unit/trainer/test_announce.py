"""The `recs.model-updates` value: which version, where, and how good."""

from __future__ import annotations

from streamrec.foundation.schema import Item
from streamrec.foundation.store import Manifest, ModelStore
from streamrec.trainer.announce import announcement
from tests.versions import publish_random_version


def test_an_announcement_names_the_version_its_path_and_its_figures(tmp_path):
    store = ModelStore(tmp_path)
    version = publish_random_version(store, [Item("i1", "mug", "kitchen")]).version
    said = announcement(store, version)
    assert said["version"] == version and said["model"] == "two-tower"
    assert said["path"] == str(store.root / version) and said["recall@20"] is None  # an untrained version has none
    assert set(said) == {"model", "version", "path", "created", "recall@20", "popularity_recall@20"}
    assert Manifest.from_json(store.load_manifest(version).to_json()).created == said["created"]
