"""A small model configuration and a user with history, for the encoding and tower tests."""

from __future__ import annotations

from streamrec.embeddings.encoding import ModelConfig
from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.schema import Event

CONFIG = ModelConfig(dim=16, hidden=32, id_buckets=1024, category_buckets=64, text_buckets=2048, max_recent=5)


def user_with_events(events: int) -> UserFeatures:
    """User u1 after `events` events over six items and three categories, every fourth a purchase."""
    user = UserFeatures("u1")
    for n in range(events):
        kind = "purchase" if n % 4 == 3 else "click"
        apply_event(user, Event(f"e{n}", kind, "u1", f"i{n % 6}", 1000.0 + 7.25 * n), f"c{n % 3}", FeatureConfig())
    return user
