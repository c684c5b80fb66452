"""Decoding any bytes safely: msgpack, JSON and batches, or an InvalidRecord that says why."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.foundation.codec import Rejected, decode_records, decode_values, encode
from streamrec.foundation.schema import InvalidRecord, Limits, validate_event

LIMITS = Limits(max_id_chars=16, max_text_chars=40, max_value_bytes=1024, max_batch_elements=3)


GOOD = {"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": 1.5}


def values(raw: bytes) -> list:
    return decode_values(raw, LIMITS)


def test_msgpack_json_and_batches_decode_alike():
    assert values(encode(GOOD)) == [GOOD]
    assert values(json.dumps(GOOD).encode()) == [GOOD]
    assert values(b"  " + json.dumps([GOOD, GOOD]).encode()) == [GOOD, GOOD]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty value"),
        (b"\xc1garbage", "not valid msgpack"),
        (b"{not json", "not valid JSON"),
        (encode("a string"), "must be a map or an array of maps"),
        (encode([]), "empty batch"),
        (encode([GOOD] * 4), "4 elements, the limit is 3"),
        (b"{" + b" " * 2000 + b"}", "2002 bytes, the limit is 1024"),
        (None, "tombstone"),
    ],
)
def test_undecodable_values_say_why(raw, reason):
    with pytest.raises(InvalidRecord, match=reason):
        values(raw)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_invalid_record(raw):
    try:
        decoded = values(raw)
    except InvalidRecord:
        return
    assert isinstance(decoded, list) and decoded


def test_no_value_raises_out_of_the_decode_and_validate_loop():
    def broken_validator(value, limits):
        raise RuntimeError("a bug in a validator")

    assert list(decode_records(encode(GOOD), LIMITS, broken_validator)) == [
        Rejected("could not be read: RuntimeError: a bug in a validator")
    ]
    deep = b"\x91" * 5000 + b"\xc0"  # msgpack arrays nested 5,000 deep
    (rejected,) = decode_records(deep, LIMITS, validate_event)
    assert type(rejected) is Rejected


@given(st.binary(max_size=300))
def test_any_bytes_give_records_or_rejections(raw):
    for record in decode_records(raw, LIMITS, validate_event):
        assert type(record) is Rejected or record.user_id
