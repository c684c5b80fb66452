"""The session-kNN peers on sessions small enough to score by hand."""

from __future__ import annotations

import pytest

from streamrec.bench.session_knn import STAN, VSKNN, SessionKnn, SessionKnnConfig, ranked

DAY = 86_400.0


def _sessions(**clicks: list[int]) -> dict[str, list[tuple[float, int]]]:
    """Sessions of item rows, the n-th named ending on day n."""
    return {name: [(n * DAY + p, row) for p, row in enumerate(rows)] for n, (name, rows) in enumerate(clicks.items())}


def test_vsknn_weighs_the_newest_shared_click_most():
    # The current session clicked 0 then 1: a session sharing 1 (the newest) outweighs one sharing 0.
    knn = SessionKnn(_sessions(old=[0, 2], new=[1, 3]), items=4, config=VSKNN)
    scores = knn.scores([0, 1], now=2 * DAY)
    # Shared 0 at position 1 of 2: (1/2)^2 = 0.25, newest shared two steps back: / 2^2; shared 1: 1.0, / 1.
    assert scores == pytest.approx({0: 0.0625, 2: 0.0625, 1: 1.0, 3: 1.0})
    assert ranked(scores, ["a", "b", "c", "d"], 2) == ["b", "d"]


def test_stan_prefers_recent_sessions_and_items_near_the_shared_one():
    knn = SessionKnn(_sessions(far=[5, 0, 6, 7], recent=[0, 8]), items=9, config=STAN)
    scores = knn.scores([0], now=1 * DAY)
    # Item 6 is one click from the shared 0 in "far", 7 two clicks: exp(-1/0.5) over exp(-2/0.5).
    assert scores[6] / scores[7] == pytest.approx(2.718281828**2)
    assert scores[6] == pytest.approx(scores[5])  # one click either side
    assert scores[8] > scores[6]  # the newer, shorter session is nearer
    assert knn.scores([4], now=DAY) == {} and knn.scores([], now=DAY) == {}


def test_only_the_most_recent_sample_of_sessions_is_searched():
    sessions = _sessions(**{f"s{n}": [0, n + 1] for n in range(5)})
    knn = SessionKnn(sessions, items=6, config=SessionKnnConfig(neighbours=10, sample=2, stan=False))
    assert set(knn.scores([0], now=5 * DAY)) == {0, 4, 5}  # the two newest sessions' items
