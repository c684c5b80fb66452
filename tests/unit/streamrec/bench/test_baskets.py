"""The bought-together benchmark on a log whose baskets repeat: a perfect list is seen as one."""

from __future__ import annotations

import pytest

from streamrec.bench.baskets import bench_baskets
from streamrec.foundation.schema import Event, Item

ITEMS = [Item(i, i, "") for i in ("mug", "saucer", "pan", "lid", "kettle")]


def _basket(user: str, ts: float, *items: str) -> list[Event]:
    return [Event(f"{user}-{ts}-{i}", "purchase", user, i, ts) for i in items]


def test_pairs_that_always_go_together_are_found_and_popularity_is_beaten():
    log = []
    for n in range(20):  # mugs go with saucers, pans with lids, every time; kettles alone are the best sellers
        log += _basket(f"u{n}", float(n), "mug", "saucer") + _basket(f"v{n}", float(n), "pan", "lid")
        log += _basket(f"w{n}", float(n), "kettle") + _basket(f"x{n}", float(n), "kettle")
    report = bench_baskets(log, ITEMS, k=1)
    assert report.test_baskets > 0 and report.pairs == 2 * report.test_baskets
    assert report.hit_rate["bought_together"] == report.per_basket["bought_together"] == 1.0
    assert report.hit_rate["popularity"] < 1.0
    assert report.to_json(1)["benchmark"] == "baskets"


def test_a_log_without_purchases_or_late_baskets_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="no purchases"):
        bench_baskets([Event("c", "click", "u", "mug", 0.0)], ITEMS)
    with pytest.raises(ValueError, match="no basket of two"):
        bench_baskets(_basket("u", 0.0, "mug"), ITEMS)
