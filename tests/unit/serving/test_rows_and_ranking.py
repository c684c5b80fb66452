"""The served index's row bookkeeping and ranking, on plain data."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from streamrec.foundation.schema import ScoredItem
from streamrec.serving.ranking import diversify, first_k
from streamrec.serving.rows import AllowBitmap, TitleWords


@given(st.sets(st.integers(0, 200)), st.sets(st.integers(0, 200)))
def test_the_bitmap_holds_exactly_the_rows_switched_on_and_not_off_again(on, off):
    bitmap = AllowBitmap(3)
    bitmap.grow(201)
    bitmap.set(sorted(on), True)
    bitmap.set(sorted(off), False)
    expected = on - off
    assert {row for row in range(201) if bitmap.allows(row)} == expected
    assert bitmap.allows_each(np.arange(201)).tolist() == [row in expected for row in range(201)]


def test_growing_the_bitmap_keeps_the_rows_already_on():
    bitmap = AllowBitmap(8)
    bitmap.set([0, 7], True)
    bitmap.grow(10_000)
    assert bitmap.allows(0) and bitmap.allows(7) and not bitmap.allows(9_999) and len(bitmap.bits) >= 1250


def test_a_title_match_needs_every_word_of_the_query():
    titles = TitleWords()
    titles.add(0, "Red enamel mug")
    titles.add(1, "Blue mug")
    titles.add(2, "Red kettle")
    assert titles.matches("red mug") == {0}
    assert titles.matches("MUG") == {0, 1}
    assert titles.matches("green mug") == set() and titles.matches("  ") == set()


def test_the_first_k_skip_missing_rows_and_excluded_items():
    scores, rows = np.array([0.9, 0.8, 0.7, 0.6]), np.array([2, -1, 0, 1])
    answer = first_k(scores, rows, ["a", "b", "c"], 2, skip={"c"})
    assert answer == [ScoredItem("a", 0.7), ScoredItem("b", 0.6)]


def test_diversity_caps_each_category_and_fills_with_the_capped_when_too_few_compete():
    ranked = [ScoredItem(f"{category}{n}", 1.0 - n / 10) for n, category in enumerate("aaaab")]
    category_of = lambda item_id: item_id[0]
    assert diversify(ranked, 4, 0.0, category_of) == ranked[:4]
    assert [s.item_id for s in diversify(ranked, 4, 0.5, category_of)] == ["a0", "a1", "b4", "a2"]
