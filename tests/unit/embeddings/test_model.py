"""The two towers."""

from __future__ import annotations

import pytest
import torch

from streamrec.embeddings.encoding import ModelConfig, encode_items, encode_queries, encode_users
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.schema import Item
from tests.unit.embeddings.helpers import CONFIG, user_with_events


@pytest.mark.parametrize("pooling", ["attention", "decay"])
def test_towers_give_unit_vectors_for_users_items_and_queries(pooling):
    config = ModelConfig(**{**CONFIG.to_dict(), "pooling": pooling})
    model = TwoTower(config).eval()
    items = [Item("i1", "Red mug", "kitchen", price=9.5), Item("i2", "Garden hose", "garden")]
    with torch.no_grad():
        users = model.user_vectors(
            to_tensors(encode_users([user_with_events(7), UserFeatures("new")], 2000.0, config, 86_400.0))
        )
        vectors = model.item_vectors(to_tensors(encode_items(items, config)))
        queries = model.query_vectors(torch.as_tensor(encode_queries(["red mug"], config)))
    for tensor, rows in ((users, 2), (vectors, 2), (queries, 1)):
        assert tensor.shape == (rows, config.dim)
        assert torch.allclose(tensor.norm(dim=-1), torch.ones(rows), atol=1e-5)


@pytest.mark.parametrize("pooling", ["attention", "decay"])
def test_a_users_vector_does_not_depend_on_the_longest_history_in_its_batch(pooling):
    """Slots end at the batch's longest history: the padding a longer one adds is masked out."""
    model = TwoTower(ModelConfig(**{**CONFIG.to_dict(), "pooling": pooling})).eval()
    short, longer = user_with_events(2), user_with_events(9)
    with torch.no_grad():
        alone = model.user_vectors(to_tensors(encode_users([short], 2000.0, model.config, 86_400.0)))
        beside = model.user_vectors(to_tensors(encode_users([short, longer], 2000.0, model.config, 86_400.0)))
    torch.testing.assert_close(alone[0], beside[0])
