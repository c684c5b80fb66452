"""A placement's rule: what it lets through, what it refuses to be, and the
rule book that applies only well-formed rules an admin key signed."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from streamrec.foundation.http import Access
from streamrec.foundation.placement_book import PlacementBook, placement_record, signed_bytes
from streamrec.foundation.rules import Boost, Rule
from streamrec.foundation.schema import Item

NOW = 1_700_000_000.0
DAY = 86_400.0
LAMP = Item("lamp", "red lamp", "lighting", price=40.0, ts=NOW - 3 * DAY, attributes={"brand": "Acme"})
SOFA = Item("sofa", "blue sofa", "furniture", price=900.0, ts=NOW - 400 * DAY)
MUG = Item("mug", "mug", "kitchen")  # no price, no ts


def test_filters_let_through_only_what_every_bound_allows():
    def passing(rule: Rule) -> set[str]:
        return {item.item_id for item in (LAMP, SOFA, MUG) if rule.allows(item, NOW)}

    assert passing(Rule()) == {"lamp", "sofa", "mug"} and not Rule().filters
    assert passing(Rule(include_categories=("lighting", "kitchen"))) == {"lamp", "mug"}
    assert passing(Rule(exclude_categories=("kitchen",), exclude_items=("sofa",))) == {"lamp"}
    assert passing(Rule(max_price=100)) == {"lamp"}  # an item without a price fails a price bound
    assert passing(Rule(min_price=100)) == {"sofa"}
    assert passing(Rule(max_age_days=30)) == {"lamp"}  # and one without ts an age bound


def test_boosts_add_the_weights_of_the_conditions_an_item_meets():
    rule = Rule(
        boosts=(
            Boost(category="lighting", weight=0.5),
            Boost(attribute="brand", value="Acme", weight=0.25),
            Boost(new_within_days=7, weight=0.125),
            Boost(category="furniture", weight=-1),
        )
    )
    assert rule.boost(LAMP, NOW) == 0.875 and rule.boost(SOFA, NOW) == -1 and rule.boost(MUG, NOW) == 0
    assert rule.boost(None, NOW) == 0 and not rule.filters


@pytest.mark.parametrize(
    "wire, says",
    [
        ({"min_price": 50, "max_price": 10}, "above max_price"),
        ({"boosts": [{"weight": 0.5}]}, "needs a condition"),
        ({"boosts": [{"attribute": "brand", "weight": 0.5}]}, "together"),
        ({"boosts": [{"category": "x", "weight": 3}]}, "less than or equal to 1"),
        ({"exclude_items": ["x"] * 1001}, "at most 1000"),
        ({"exclude_items": ["x" * 257]}, "1 to 256 characters"),
        ({"promoted": [""]}, "1 to 256 characters"),
        ({"max_age_days": -1}, "greater than 0"),
        ({"promoted_slot": 1000}, "less than or equal to 100"),
        ({"filters": "all"}, "Extra inputs are not permitted"),
        ({"min_price": "nan"}, "greater than or equal to 0"),
    ],
)
def test_a_rule_out_of_bounds_is_refused_with_the_reason(wire, says):
    with pytest.raises(ValidationError, match=says):
        Rule.model_validate(wire)


def _book(admin_keys: str = "") -> PlacementBook[Rule]:
    access = Access(SecretStr(""), SecretStr(admin_keys))
    return PlacementBook(
        "recs.rules", "rule", Rule, lambda payload, signature: access.signed("rule", payload, signature)
    )


def rule_record(rule: Rule, signature: str) -> bytes:
    return placement_record("rule", rule, signature)


def _signed(placement: str, rule: Rule, key: str) -> bytes:
    access = Access(SecretStr(""), SecretStr(key))
    return rule_record(rule, access.sign_for("rule", signed_bytes(placement, rule)))


def test_the_book_applies_rules_and_tombstones_and_skips_what_does_not_parse():
    book = _book()
    rule = Rule(exclude_items=("sofa",), promoted=("lamp",))
    book.apply(b"home", rule_record(rule, ""))
    assert book.get("home") == rule
    for bad in (b"{", b"[]", json.dumps({"rule": {"max_price": -1}}).encode(), json.dumps({"rule": 3}).encode()):
        book.apply(b"home", bad)
    assert book.get("home") == rule  # the rule before a bad record stays
    book.apply(b"../etc", rule_record(rule, ""))
    book.apply(None, rule_record(rule, ""))
    assert set(book.entries) == {"home"}
    book.apply(b"home", None)
    assert book.get("home") is None


def test_with_admin_keys_only_a_rule_signed_for_its_placement_is_applied():
    book = _book("admin-1,admin-2")
    rule = Rule(exclude_categories=("kitchen",))
    book.apply(b"home", rule_record(rule, ""))  # anyone who may write the topic
    book.apply(b"home", _signed("home", rule, "someone-else"))
    book.apply(b"cart", _signed("home", rule, "admin-2"))  # signed for another placement
    assert book.entries == {}
    book.apply(b"home", _signed("home", rule, "admin-2"))
    assert book.get("home") == rule
