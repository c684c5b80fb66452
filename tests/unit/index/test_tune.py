"""Tuning a version's index on its own users: the target from the settings,
the queries (users first, item vectors for a young shop), and the choice."""

from __future__ import annotations

from streamrec.foundation.features import FeatureConfig, UserFeatures, apply_event
from streamrec.foundation.schema import Event, Item
from streamrec.foundation.settings import Settings
from streamrec.foundation.store import ModelStore
from streamrec.index.cost import Target
from streamrec.index.kinds import IndexSpec
from streamrec.index.tune import MIN_USER_QUERIES, choose_for_version, target_of, tune, user_queries
from tests.versions import publish_random_version

ITEMS = [Item(f"i{n}", f"item {n}", f"c{n % 5}") for n in range(400)]


def _user(n: int, events: int = 3) -> UserFeatures:
    user = UserFeatures(f"u{n}")
    for e in range(events):
        apply_event(
            user, Event(f"e{n}-{e}", "click", user.user_id, f"i{(n * 7 + e) % 400}", 100.0 + e), "c1", FeatureConfig()
        )
    return user


def test_the_target_comes_from_the_settings_with_zero_meaning_no_bound():
    assert target_of(Settings().tune) == Target(0.95, None, None, "latency")
    assert target_of(Settings(tune_recall=0, tune_p99_ms=2, tune_prefer="memory").tune) == Target(
        None, 2.0, None, "memory"
    )


def test_users_with_a_history_become_queries_and_item_vectors_fill_a_young_shops_sample(tmp_path):
    version = publish_random_version(ModelStore(tmp_path), ITEMS)
    users = [_user(n) for n in range(10)] + [UserFeatures("idle")]  # no history: not a query
    vectors, from_users = user_queries(version, users, wanted=80, settings=Settings().tune)
    assert from_users == 10 and vectors.shape == (80, version.item_vectors.shape[1])
    many = [_user(n) for n in range(MIN_USER_QUERIES)]
    vectors, from_users = user_queries(version, many, wanted=MIN_USER_QUERIES, settings=Settings().tune)
    assert from_users == MIN_USER_QUERIES and len(vectors) == MIN_USER_QUERIES  # no stand-ins needed


def test_tuning_measures_each_build_and_chooses_one_meeting_the_recall_floor(tmp_path):
    version = publish_random_version(ModelStore(tmp_path), ITEMS)
    users = [_user(n) for n in range(60)]
    settings = Settings(tune_queries=60, tune_recall=0.9)
    tuning = tune(version, users, settings.tune, builds=[IndexSpec("flat"), IndexSpec("hnsw", hnsw_m=8)])
    assert tuning.queries_from_users == 60 and tuning.target.recall_floor == 0.9
    assert {m.spec.kind for m in tuning.measurements} == {"flat", "hnsw"}
    assert tuning.chosen is not None and tuning.chosen.recall_at_k >= 0.9
    flat = next(m for m in tuning.measurements if m.spec.kind == "flat")
    assert flat.recall_at_k == 1.0  # exact against exact


def test_the_trainers_hook_records_nothing_when_no_configuration_meets_the_target(tmp_path):
    store = ModelStore(tmp_path)
    version = publish_random_version(store, ITEMS)
    impossible = Settings(tune_queries=20, tune_recall=1.0, tune_p99_ms=1e-6)
    assert choose_for_version(store, impossible.tune, version.version, [_user(n) for n in range(20)]) is None
