"""Bytes on the wire to Python values and back: msgpack, or JSON for any producer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from streamrec.foundation.schema import InvalidRecord, Limits

_JSON_FIRST_BYTES = frozenset(b"{[ \t\r\n")

R = TypeVar("R")


class UndecodableValue(InvalidRecord):
    """A value that is neither msgpack nor JSON of the expected shape."""


def encode(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def decode(raw: bytes) -> Any:
    """One msgpack or JSON document. A leading `{`, `[` or whitespace means JSON
    (none of them starts a msgpack map or array)."""
    if not raw:
        raise UndecodableValue("empty value")
    try:
        if raw[0] in _JSON_FIRST_BYTES:
            return json.loads(raw)
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        kind = "JSON" if raw[0] in _JSON_FIRST_BYTES else "msgpack"
        raise UndecodableValue(f"not valid {kind}: {exc}") from None


def decode_values(raw: bytes | None, limits: Limits) -> list[Any]:
    """The records in one Kafka value: a single map or an array of maps (a batch).

    Elements are returned undecided; each is validated on its own so that one bad
    element of a batch does not sink the others.
    """
    if raw is None:
        raise UndecodableValue("null value (tombstone) on an event topic")
    if raw and 0x80 <= raw[0] <= 0x8F and len(raw) <= limits.max_value_bytes:  # the common case: a small msgpack map
        try:
            return [msgpack.unpackb(raw, raw=False, strict_map_key=False)]
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException):
            pass  # the full path below says what is wrong
    if len(raw) > limits.max_value_bytes:
        raise UndecodableValue(f"value is {len(raw)} bytes, the limit is {limits.max_value_bytes}")
    value = decode(raw)
    if isinstance(value, list):
        if len(value) > limits.max_batch_elements:
            raise UndecodableValue(f"batch holds {len(value)} elements, the limit is {limits.max_batch_elements}")
        if not value:
            raise UndecodableValue("empty batch")
        return value
    if isinstance(value, dict):
        return [value]
    raise UndecodableValue(f"value must be a map or an array of maps, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a value, or one element of a batch, was refused."""

    reason: str
    element: int | None = None  # the batch element; None for a whole value or a lone record


def decode_records(raw: bytes | None, limits: Limits, validate: Callable[[Any, Limits], R]) -> Iterator[R | Rejected]:
    """Each record in one Kafka value, validated (`validate_event`,
    `validate_item`), or a `Rejected` saying why not: the one loop that every
    reader of an input topic shares. No value can raise out of it: whatever
    goes wrong with one value (or element) rejects that one alone."""
    try:
        values = decode_values(raw, limits)
    except InvalidRecord as exc:
        yield Rejected(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a value the decoder chokes on is rejected, never fatal
        yield Rejected(_unexpected(exc))
        return
    batch = len(values) > 1
    for element, value in enumerate(values):
        try:
            yield validate(value, limits)
        except InvalidRecord as exc:
            yield Rejected(str(exc), element if batch else None)
        except Exception as exc:  # noqa: BLE001 - as above, for one element
            yield Rejected(_unexpected(exc), element if batch else None)


def _unexpected(exc: Exception) -> str:
    return f"could not be read: {type(exc).__name__}: {str(exc)[:200]}"
