"""The feature encoding shared by training and serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.embeddings.encoding import age_buckets, encode_users, price_bucket
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.foundation.features import UserFeatures
from tests.unit.embeddings.helpers import CONFIG, user_with_events


def test_price_and_age_buckets_are_bounded():
    assert price_bucket(None, 16) == 0
    assert 1 <= price_bucket(0.0, 16) < price_bucket(100.0, 16) <= 15 and price_bucket(1e12, 16) == 15
    assert age_buckets(np.array([-5.0, 0.0, 3600.0, 86400.0, 1e12]), 16).tolist() == [1, 1, 6, 11, 15]


def test_serving_state_from_the_changelog_encodes_like_the_trainers():
    trainer_side = user_with_events(9)
    serving_side = UserFeatures.from_wire(trainer_side.to_wire())  # as a worker restores it
    a = encode_users([trainer_side], 2000.0, CONFIG, 86_400.0)
    b = encode_users([serving_side], 2000.0, CONFIG, 86_400.0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    model = TwoTower(CONFIG).eval()
    with torch.no_grad():
        assert torch.equal(model.user_vectors(to_tensors(a)), model.user_vectors(to_tensors(b)))


def test_user_encoding_is_newest_first_and_padded():
    encoded = encode_users([user_with_events(3), UserFeatures("new")], 2000.0, CONFIG, 86_400.0)
    assert encoded["recent_types"].tolist() == [[1, 1, 1], [0, 0, 0]]  # slots end at the longest history
    assert encoded["recent_age_s"][0, 0] < encoded["recent_age_s"][0, 1]
    assert encoded["category_weights"][0].sum() == pytest.approx(1.0)
    assert encoded["counts"][1].tolist() == [0.0, 0.0]
