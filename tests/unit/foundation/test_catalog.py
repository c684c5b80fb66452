"""The catalog view: the latest valid item per id, changes in order, tombstones included."""

from __future__ import annotations

from streamrec.foundation.catalog import CatalogView, Removed
from streamrec.foundation.codec import encode
from streamrec.foundation.schema import Item, Limits


def test_changes_are_drained_in_order_with_tombstones_and_bad_records_skipped():
    catalog = CatalogView("catalog", Limits(), track_changes=True)
    catalog.apply(b"i1", encode({"item_id": "i1", "title": "Red mug", "category": "kitchen"}))
    catalog.apply(b"i2", b'{"item_id": "i2", "title": "bad\\ud800", "category": "kitchen"}')  # no UTF-8 for it
    catalog.apply(b"i3", b"\xc1 not msgpack")
    catalog.apply(b"i1", None)
    assert catalog.drain_changes() == [Item("i1", "Red mug", "kitchen"), Removed("i1")]
    assert catalog.items == {} and catalog.category_of("i1") is None and catalog.drain_changes() == []


def test_a_view_that_does_not_track_changes_keeps_only_the_items():
    catalog = CatalogView("catalog", Limits())
    catalog.apply(b"i1", encode({"item_id": "i1", "title": "Red mug", "category": "kitchen"}))
    assert catalog.category_of("i1") == "kitchen" and catalog.drain_changes() == []
