"""Validating wire records: every bound enforced, every rejection with a precise reason."""

from __future__ import annotations

import time

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.foundation.codec import decode_values
from streamrec.foundation.schema import Forget, InvalidRecord, Limits, validate_control, validate_event, validate_item

LIMITS = Limits(max_id_chars=16, max_text_chars=40, max_value_bytes=1024, max_batch_elements=3)


GOOD = {"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": 1.5}


def values(raw: bytes) -> list:
    return decode_values(raw, LIMITS)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=12,
)


@given(JSONISH)
def test_any_msgpack_value_is_accepted_or_rejected_with_a_reason(value):
    try:
        for element in values(msgpack.packb(value)):
            validate_event(element, LIMITS)
    except InvalidRecord as exc:
        assert str(exc)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": None}, "missing required field 'type'"),
        ({"type": "view"}, "'type' must be one of click, purchase"),
        ({"user_id": 7}, "'user_id' must be a string, got int 7"),
        ({"user_id": ""}, "'user_id' must not be empty"),
        ({"item_id": "x" * 17}, "'item_id' is 17 characters long, the limit is 16"),
        ({"ts": -1}, "'ts' must be a finite number >= 0"),
        ({"ts": 10**400}, "'ts' must be a finite number >= 0 and < 1e\\+11"),
        ({"ts": 1.7e12}, "< 1e\\+11, got 1700000000000.0"),
        ({"ts": float("nan")}, "'ts' must be a finite number"),
        ({"ts": "yesterday"}, "'ts' must be a number, got str"),
        ({"ts": True}, "'ts' must be a number, got bool"),
        ({"quantity": 0}, "'quantity' must be an integer from 1 to 1,000,000"),
        ({"quantity": 2**70}, "'quantity' must be an integer from 1 to 1,000,000"),
        ({"ts": time.time() + 3 * 365 * 86_400}, "'ts' is 94,60.,... s in the future, the limit is 86,400 s"),
        ({"user_id": "u\ud800"}, "'user_id' is not valid Unicode text"),
        ({"item_id": "\udfff"}, "'item_id' is not valid Unicode text"),
        ({"event_id": "e\ud800x"}, "'event_id' is not valid Unicode text"),
        ({"user_id": [[[[[[[["deep"]]]]]]]]}, "'user_id' must be a string, got list"),
        ({"query": "q" * 41}, "'query' is 41 characters long, the limit is 40"),
    ],
)
def test_invalid_events_name_the_field(change, reason):
    wire = {**GOOD, **change}
    wire = {k: v for k, v in wire.items() if v is not None}
    with pytest.raises(InvalidRecord, match=reason):
        validate_event(wire, LIMITS)


def test_valid_event_fast_and_full_paths_agree():
    fast = validate_event(GOOD, LIMITS)
    full = validate_event({**GOOD, "session_id": "s1", "unknown_field": [1, 2]}, LIMITS)
    assert (fast.event_id, fast.ts) == ("e1", 1.5)
    assert full.session_id == "s1" and full.user_id == fast.user_id


def test_an_event_an_hour_ahead_is_accepted_and_a_non_ascii_id_too():
    assert validate_event({**GOOD, "ts": time.time() + 3600}, LIMITS).ts > time.time()
    assert validate_event({**GOOD, "user_id": "Zoë", "ts": 10.0}, LIMITS).user_id == "Zoë"


def test_deeply_nested_values_are_rejected_with_a_short_reason():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for value in (deep, {**GOOD, "type": deep}, {**GOOD, "item_id": deep}):
        with pytest.raises(InvalidRecord) as rejected:
            validate_event(value, LIMITS)
        assert len(str(rejected.value)) < 200


def test_items_refuse_broken_text_and_far_future_times():
    base = {"item_id": "i1", "title": "Red mug", "category": "kitchen"}
    for field in ("item_id", "title", "category"):
        with pytest.raises(InvalidRecord, match=f"'{field}' is not valid Unicode text"):
            validate_item({**base, field: "bad\ud800"}, LIMITS)
    with pytest.raises(InvalidRecord, match="in the future"):
        validate_item({**base, "ts": time.time() + 10 * 86_400}, LIMITS)


def test_items_validate_with_defaults_and_bounded_attributes():
    item = validate_item({"item_id": "i1", "title": "Red mug", "category": "kitchen"}, LIMITS)
    assert item.in_stock is True and item.attributes == {}
    with pytest.raises(InvalidRecord, match="'in_stock' must be true or false"):
        validate_item({"item_id": "i1", "title": "t", "category": "c", "in_stock": "no"}, LIMITS)
    with pytest.raises(InvalidRecord, match="65 entries, the limit is 64"):
        validate_item(
            {"item_id": "i1", "title": "t", "category": "c", "attributes": {str(i): "v" for i in range(65)}}, LIMITS
        )


def test_a_control_record_is_a_forget_or_rejected_with_a_reason():
    limits = Limits()
    forget = validate_control({"type": "forget", "user_id": "u1", "ts": 5.0}, limits)
    assert forget == Forget("u1", 5.0) and validate_control(forget.to_wire(), limits) == forget
    for value, reason in [
        ({"type": "erase-everything", "user_id": "u1", "ts": 5.0}, "field 'type' must be 'forget'"),
        ({"type": "forget", "user_id": "u" * 300, "ts": 5.0}, "characters long"),
        ({"type": "forget", "user_id": "u1", "ts": 1e10}, "in the future"),
        (["forget"], "a control record must be a map"),
    ]:
        with pytest.raises(InvalidRecord, match=reason):
            validate_control(value, limits)
