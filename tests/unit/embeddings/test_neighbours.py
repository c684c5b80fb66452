"""Item neighbours and the exact standardisation of both sources."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.embeddings.neighbours import (
    Neighbours,
    TowerMoments,
    _had,
    blended,
    ease_weights,
    newest_last,
    recency_decay,
    transition_weights,
    vote_moments,
)


def test_ease_neighbours_are_the_closed_form_weights_largest_first():
    histories = [[0, 1], [0, 1], [0, 1, 2], [2, 3], [2, 3], [3]]
    neighbours = Neighbours.from_ease(histories, items=4, k=3, regularisation=1.0)
    had = np.zeros((6, 4))
    for user, items in enumerate(histories):
        had[user, items] = 1
    inverse = np.linalg.inv(had.T @ had + np.eye(4))
    weights = -inverse / np.diag(inverse)  # Steck 2019, eq. 8: B = I - P diag(1/diag P), diagonal zero
    np.fill_diagonal(weights, 0)
    for item in range(4):
        expected = [other for other in np.argsort(-weights[item]) if weights[item, other] > 0]
        assert list(neighbours.rows[item][: len(expected)]) == expected
        assert np.allclose(neighbours.weights[item][: len(expected)], weights[item, expected], atol=1e-5)
        assert (neighbours.rows[item][len(expected) :] == -1).all()  # only positive weights vote
    assert neighbours.rows[0, 0] == 1 and neighbours.rows[3, 0] == 2


def test_neighbours_are_the_cosine_of_co_occurrence_best_first():
    # Items 0 and 1 always together; 2 with 0 once; 3 alone.
    histories = [[0, 1], [0, 1], [0, 2], [3], [1, 1, 0]]
    neighbours = Neighbours.from_histories(histories, items=4, k=2)
    assert list(neighbours.rows[0]) == [1, 2] and list(neighbours.rows[3]) == [-1, -1]
    assert np.isclose(neighbours.weights[0, 0], 3 / np.sqrt(4 * 3))  # 3 users had both; 4 had 0, 3 had 1
    assert np.isclose(neighbours.weights[0, 1], 1 / np.sqrt(4 * 1))
    candidates, votes = neighbours.votes(np.array([0, 1]))
    assert dict(zip(candidates.tolist(), votes.round(4).tolist(), strict=True)) == {
        0: round(3 / np.sqrt(12), 4),
        1: round(3 / np.sqrt(12), 4),
        2: 0.5,
    }
    again = Neighbours.from_arrays(neighbours.to_arrays())
    assert np.array_equal(again.rows, neighbours.rows) and Neighbours.from_arrays({}) is None


def test_a_half_life_makes_the_newest_items_vote_louder():
    neighbours = Neighbours.from_histories([[0, 1], [0, 1], [2, 3], [2, 3]], items=4, k=1)
    assert newest_last(["a", "b", "a", "c"]) == ["b", "a", "c"]  # "a" at its latest place
    assert np.allclose(recency_decay(3, 1.0), [0.25, 0.5, 1.0]) and np.allclose(recency_decay(2, 0.0), [1, 1])
    # 0 votes for 1, 2 for 3; 2 is the newest: with a half-life of one item, 0's vote is halved.
    candidates, votes = neighbours.votes(np.array([0, 2]), half_life=1.0)
    assert dict(zip(candidates.tolist(), votes.round(4).tolist(), strict=True)) == {1: 0.5, 3: 1.0}
    # An item outside the neighbours' rows (-1, or added after training) still counts as a newer item.
    candidates, votes = neighbours.votes(np.array([0, 2, 4, -1]), half_life=1.0)
    assert dict(zip(candidates.tolist(), votes.round(4).tolist(), strict=True)) == {1: 0.125, 3: 0.25}
    _, alike = neighbours.votes(np.array([0, 2]))
    assert alike.round(4).tolist() == [1.0, 1.0]


def test_random_walks_discount_what_everyone_had():
    # Everyone had 0; 1 and 2 went together twice, 1 and 3 once.
    histories = [[0, 1, 2], [0, 1, 2], [0, 1, 3], [0, 4], [0, 4]]
    walks = Neighbours.from_random_walks(histories, items=5, k=3, beta=0.5)
    # From 1: to 0 by each of its 3 users (1/3 each, then 1/3 to 0) = 1/3, over 5^0.5; to 2: 2/9, over 2^0.5.
    scores = dict(zip(walks.rows[1].tolist(), walks.weights[1].tolist(), strict=True))
    assert scores[0] == pytest.approx(1 / 3 / np.sqrt(5), rel=1e-5)
    assert scores[2] == pytest.approx(2 / 9 / np.sqrt(2), rel=1e-5)
    assert list(walks.rows[1][:2]) == [2, 0]  # the popular item falls behind the habit
    assert 1 not in walks.rows[1]  # never its own neighbour


def test_transitions_are_directed_what_comes_next():
    # 0 is always followed by 1 (and 1 by 2): transitions point forward, EASE's weights both ways.
    sequences = [[0, 1], [0, 1, 2], [3, 0, 1], [1, 2]]
    following = transition_weights(sequences, items=4, regularisation=0.1)
    assert following[0, 1] > 0.5 and following[1, 2] > 0.5
    assert abs(following[1, 0]) < 0.1 and abs(following[2, 1]) < 0.1 and following[0, 0] == 0.0
    together = ease_weights(_had(sequences, 4), 0.1)
    assert together[1, 0] > 0.1  # EASE: 1 "goes with" 0 as much as 0 with 1
    mixed = Neighbours.from_ease(sequences, 4, k=2, regularisation=0.1, transitions=1.0)
    assert mixed.rows[0, 0] == 1 and mixed.rows[1, 0] == 2  # the next click first


def test_remapping_follows_the_ids_onto_new_rows():
    neighbours = Neighbours.from_histories([[0, 1], [0, 1], [1, 2]], items=3, k=2)
    moved = neighbours.remapped(["a", "b", "c"], ["c", "x", "a", "b"])
    assert list(moved.rows[2]) == [3, -1]  # a's neighbour b is now row 3
    assert list(moved.rows[1]) == [-1, -1]  # x is new: no neighbours
    assert {int(r) for r in moved.rows[3] if r >= 0} == {2, 0}  # b's neighbours a and c


def test_the_moments_give_each_users_exact_score_mean_and_spread():
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(500, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    means, stds = TowerMoments.of(items).standardise(users)
    full = users @ items.T
    assert np.allclose(means, full.mean(axis=1), atol=1e-4) and np.allclose(stds, full.std(axis=1), atol=1e-4)
    votes = np.array([0.5, 2.0])
    mean, std = vote_moments(votes, 10)
    dense = np.r_[votes, np.zeros(8)]
    assert np.isclose(mean, dense.mean()) and np.isclose(std, dense.std(), atol=1e-6)
    assert np.allclose(blended(np.array([1.0]), 0.0, 2.0, np.array([3.0]), 1.0, 1.0, 0.5), [1.5])
