"""The shared encoding and the two towers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.device import pick_device
from embeddings.encoding import ModelConfig, age_buckets, encode_items, encode_queries, encode_users, price_bucket
from embeddings.hashing import bucket_ids, bucket_matrix
from embeddings.model import TwoTower, to_tensors
from embeddings.text import tokens
from streams.features import FeatureConfig, UserFeatures, apply_event
from streams.schema import Event, Item

CONFIG = ModelConfig(dim=16, hidden=32, id_buckets=1024, category_buckets=64, text_buckets=2048, max_recent=5)


def test_buckets_are_stable_in_range_and_never_padding():
    assert bucket_ids("item-42", 1024, 2) == bucket_ids("item-42", 1024, 2)
    assert bucket_ids("item-42", 1 << 18, 2) == [87395, 68780]  # the same on every machine
    assert all(1 <= b < 7 for text in map(str, range(500)) for b in bucket_ids(text, 7, 3))


def test_text_tokens_share_trigrams_between_close_words():
    mug, mugs = set(tokens("Red Mug")), set(tokens("red mugs!"))
    assert {"w:red", "w:mug", "t:#mu", "t:mug"} <= mug
    assert len(mug & mugs) >= 6


def test_price_and_age_buckets_are_bounded():
    assert price_bucket(None, 16) == 0
    assert 1 <= price_bucket(0.0, 16) < price_bucket(100.0, 16) <= 15 and price_bucket(1e12, 16) == 15
    assert age_buckets(np.array([-5.0, 0.0, 3600.0, 86400.0, 1e12]), 16).tolist() == [1, 1, 6, 11, 15]


def _user(events: int) -> UserFeatures:
    user = UserFeatures("u1")
    for n in range(events):
        kind = "purchase" if n % 4 == 3 else "click"
        apply_event(user, Event(f"e{n}", kind, "u1", f"i{n % 6}", 1000.0 + 7.25 * n), f"c{n % 3}", FeatureConfig())
    return user


def test_serving_state_from_the_changelog_encodes_like_the_trainers():
    trainer_side = _user(9)
    serving_side = UserFeatures.from_wire(trainer_side.to_wire())  # as a worker restores it
    a = encode_users([trainer_side], 2000.0, CONFIG, 86_400.0)
    b = encode_users([serving_side], 2000.0, CONFIG, 86_400.0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    model = TwoTower(CONFIG).eval()
    with torch.no_grad():
        assert torch.equal(model.user_vectors(to_tensors(a)), model.user_vectors(to_tensors(b)))


def test_user_encoding_is_newest_first_and_padded():
    encoded = encode_users([_user(3), UserFeatures("new")], 2000.0, CONFIG, 86_400.0)
    assert encoded["recent_types"].tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert encoded["recent_age_s"][0, 0] < encoded["recent_age_s"][0, 1]
    assert encoded["category_weights"][0].sum() == pytest.approx(1.0)
    assert encoded["counts"][1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("pooling", ["attention", "decay"])
def test_towers_give_unit_vectors_for_users_items_and_queries(pooling):
    config = ModelConfig(**{**CONFIG.to_dict(), "pooling": pooling})
    model = TwoTower(config).eval()
    items = [Item("i1", "Red mug", "kitchen", price=9.5), Item("i2", "Garden hose", "garden")]
    with torch.no_grad():
        users = model.user_vectors(to_tensors(encode_users([_user(7), UserFeatures("new")], 2000.0, config, 86_400.0)))
        vectors = model.item_vectors(to_tensors(encode_items(items, config)))
        queries = model.query_vectors(torch.as_tensor(encode_queries(["red mug"], config)))
    for tensor, rows in ((users, 2), (vectors, 2), (queries, 1)):
        assert tensor.shape == (rows, config.dim)
        assert torch.allclose(tensor.norm(dim=-1), torch.ones(rows), atol=1e-5)


def test_device_is_cuda_only_when_torch_sees_a_gpu():
    assert pick_device(cuda_available=True).type == "cuda"
    assert pick_device(cuda_available=False).type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_bucket_matrix_is_bucket_ids_row_by_row():
    texts = [f"item-{n}" for n in range(300)] + ["", "ünïcode"]
    for buckets, hashes in [(1 << 18, 2), (7, 3), (64, 1), (1 << 16, 4)]:
        assert bucket_matrix(texts, buckets, hashes).tolist() == [bucket_ids(t, buckets, hashes) for t in texts]
    assert bucket_matrix([], 64, 2).shape == (0, 2)
