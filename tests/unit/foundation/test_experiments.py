"""An experiment: what it refuses to be, a stable split of the users, the
recommendation ids its answers carry, and the rates' intervals."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from streamrec.foundation.attribution import Arm, arm_of
from streamrec.foundation.experiments import Experiment, Variant, wilson_interval
from streamrec.foundation.http import Access
from streamrec.foundation.placement_book import PlacementBook, placement_record, signed_bytes

SPRING = Experiment(name="spring", variants=(Variant(name="a", share=0.5), Variant(name="b", share=0.5)))


@pytest.mark.parametrize(
    ("wire", "says"),
    [
        ({"name": "x", "variants": [{"name": "a", "share": 1.0}]}, "at least 2"),
        ({"name": "x", "variants": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "must differ"),
        ({"name": "x", "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]}, "sum to 1"),
        ({"name": "x~y", "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}, "pattern"),
        ({"name": "x", "variants": [{"name": "a", "share": 0.5, "diversity": 2}, {"name": "b", "share": 0.5}]}, "1"),
        ({"name": "x", "variants": [{"name": f"v{n}", "share": 0.2} for n in range(5)]}, "at most 4"),
    ],
)
def test_an_experiment_out_of_bounds_is_refused_with_the_reason(wire, says):
    with pytest.raises(ValidationError, match=says):
        Experiment.model_validate(wire)


def test_users_split_by_their_shares_the_same_way_everywhere_and_anew_for_a_new_name():
    experiment = Experiment(name="e1", variants=(Variant(name="a", share=0.2), Variant(name="b", share=0.8)))
    users = [f"user-{n}" for n in range(10_000)]
    split = [experiment.variant_for(user).name for user in users]
    assert 0.18 < split.count("a") / len(users) < 0.22
    assert split == [experiment.variant_for(user).name for user in users]  # stable
    renamed = experiment.model_copy(update={"name": "e2"})
    moved = sum(a != b for a, b in zip(split, (renamed.variant_for(u).name for u in users), strict=True))
    assert moved > 2000  # a new experiment draws the split again


def test_recommendation_ids_name_their_arm_and_malformed_ones_name_none():
    arm = SPRING.arm("home", SPRING.variants[1])
    first, second = arm.new_id(), arm.new_id()
    assert first != second and arm_of(first) == arm_of(second) == Arm("home", "spring", "b")
    assert arm_of(Arm("home").new_id()) == Arm("home")
    for bad in ("home~spring~~0123456789abcdef", "home~spring~b~0123", "../x~~~0123456789abcdef", "home~a~b~c~d"):
        assert arm_of(bad) is None


def test_the_wilson_interval_holds_the_rate_and_narrows_with_trials():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 100)
    assert low < 0.1 < high and (round(low, 3), round(high, 3)) == (0.055, 0.174)
    low_many, high_many = wilson_interval(1000, 10_000)
    assert high_many - low_many < (high - low) / 3
    assert wilson_interval(7, 5) == wilson_interval(5, 5)  # more clicks than answers count as one each


def test_the_experiment_book_applies_only_experiments_an_admin_key_signed():
    keys = Access(SecretStr(""), SecretStr("admin-1"))
    book = PlacementBook("recs.experiments", "experiment", Experiment, lambda b, s: keys.signed("experiment", b, s))
    book.apply(b"home", placement_record("experiment", SPRING, ""))
    signed_as_rule = keys.sign_for("rule", signed_bytes("home", SPRING))  # a signature for another purpose
    book.apply(b"home", placement_record("experiment", SPRING, signed_as_rule))
    book.apply(b"home", json.dumps({"experiment": {"name": "x"}}).encode())
    assert book.entries == {}
    book.apply(
        b"home", placement_record("experiment", SPRING, keys.sign_for("experiment", signed_bytes("home", SPRING)))
    )
    assert book.get("home") == SPRING
