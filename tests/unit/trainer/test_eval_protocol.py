"""How recommendations are judged: the window split, the lists without the
past, and the figures of a ranked list."""

from __future__ import annotations

import pytest

from streamrec.foundation.schema import Event
from streamrec.trainer.eval_protocol import judge, session_split, window_split, without_past


def _events(user: str, items: list[str], start: float = 0.0) -> list[Event]:
    return [Event(f"{user}-{n}", "click", user, item, start + n) for n, item in enumerate(items)]


def test_the_newest_fifth_of_each_users_events_is_the_window_and_its_new_items_the_targets():
    log = _events("u1", ["a", "b", "c", "d", "e", "f", "g", "h", "a", "z"]) + _events("u2", ["a"])
    split = window_split(log)
    assert [e.item_id for e in split.train if e.user_id == "u1"] == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert split.targets == {"u1": {"z"}}  # "a" was had before; u2's single event is all training
    assert split.seen["u2"] == {"a"} and [e.user_id for e in split.train].count("u2") == 1


def test_a_user_whose_window_holds_nothing_new_has_no_targets():
    assert window_split(_events("u1", ["a", "b", "a"])).targets == {}


def test_the_split_orders_by_time_not_by_the_logs_order():
    log = list(reversed(_events("u1", ["a", "b", "c", "d", "e"])))
    assert window_split(log).targets == {"u1": {"e"}}


def test_sessions_that_begin_in_the_last_day_are_tested_from_their_second_click():
    day = 86_400.0
    log = (
        _events("old", ["a", "b", "c"])
        + _events("new", ["a", "b", "a", "d"], start=3 * day + 60)
        + _events("repeat", ["b", "b"], start=3 * day + 60)
        + _events("single", ["c"], start=3 * day + 60)
        + _events("late", ["c", "d"], start=4 * day)  # the newest start: the cut is a day before it
    )
    split = session_split(log)
    assert set(split.windows) == {"new", "late"} and split.targets == {"new": {"b", "d"}, "late": {"d"}}
    assert [e.item_id for e in split.windows["new"]] == ["b", "a", "d"] and split.seen["new"] == {"a"}
    known = {(e.user_id, e.item_id) for e in split.train}
    assert ("new", "a") in known and ("new", "b") not in known  # only a test session's first click
    assert {"old", "repeat", "single"} <= {user for user, _ in known} and split.repeats == {}


def test_a_ranking_without_the_past_skips_each_users_own_items():
    lists = without_past(["a", "b", "c", "d"], {"u1": {"a", "c"}, "u2": set()}, depth=2)
    assert lists == {"u1": ["b", "d"], "u2": ["a", "b"]}


def test_a_perfect_list_scores_one_at_every_k_and_a_missing_user_zero():
    quality = judge(
        {"u1": ["x", "y"] + [f"n{i}" for i in range(48)]}, {"u1": {"x", "y"}, "u2": {"q"}}, 100, {}, ks=(1, 2, 20)
    )
    assert quality.users == 2
    assert quality.recall == {1: 0.5, 2: 0.5, 20: 0.5}  # u1 perfect, u2 missing
    assert quality.ndcg[2] == pytest.approx(0.5)


def test_recall_counts_hits_over_the_smaller_of_k_and_the_targets():
    quality = judge({"u1": ["m", "x", "m2", "y"]}, {"u1": {"x", "y", "z"}}, 10, {}, ks=(1, 2, 4))
    assert quality.recall == {1: 0.0, 2: 0.5, 4: pytest.approx(2 / 3)}


def test_coverage_and_diversity_of_the_top_twenty():
    category = {"a": "c1", "b": "c1", "c": "c2"}
    quality = judge({"u1": ["a", "b", "c"]}, {"u1": {"a"}}, catalog_size=6, category_of=category, ks=(1, 20))
    assert quality.coverage == 0.5  # 3 of 6 items shown
    assert quality.diversity == pytest.approx(2 / 3)  # (a,c) and (b,c) of three pairs differ
