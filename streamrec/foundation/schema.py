"""The wire records of docs/architecture.md and their validation.

Validation is hand-written rather than a pydantic model because it runs once
per event on the ingest hot path, and every failure names the field, the value
and what was expected: that message is what a producer's engineer reads in the
dead-letter topic.
"""

from __future__ import annotations

import reprlib
import time
from dataclasses import dataclass, field, fields
from typing import Any

from streamrec.foundation.attribution import MAX_RECOMMENDATION_ID_CHARS, arm_of
from streamrec.foundation.settings import Settings

EVENT_TYPES = ("click", "purchase")
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_CHARS = 256
MAX_TS = 1e11  # Unix seconds (the year 5138): beyond it a time is surely in ms or garbage
MAX_QUANTITY = 1_000_000
_SHOW = reprlib.Repr()  # bounded in depth and size: safe for any decoded value
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict = 2, 60, 60, 4, 4


class InvalidRecord(ValueError):
    """A value that decodes but breaks the contract; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every size that comes from outside (from Settings)."""

    max_id_chars: int = Settings.default("max_id_chars")
    max_text_chars: int = Settings.default("max_text_chars")
    max_value_bytes: int = Settings.default("max_value_bytes")
    max_batch_elements: int = Settings.default("max_batch_elements")
    max_future_s: float = Settings.default("max_future_s")

    def latest_ts(self) -> float:
        """The latest acceptable event or item time: now plus `max_future_s`."""
        return time.time() + self.max_future_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return settings.section(cls)


@dataclass(slots=True)
class Event:
    """A click or purchase. Not frozen: it is built once per event on the hot
    path, where a frozen dataclass's __init__ costs twice as much; treat it as
    immutable."""

    event_id: str
    type: str
    user_id: str
    item_id: str
    ts: float
    session_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    query: str | None = None
    recommendation_id: str | None = None  # the answer this event followed (its clicks and purchases are attributed)

    def to_wire(self) -> dict[str, Any]:
        return _present_fields(self)


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    category: str
    price: float | None = None
    in_stock: bool = True
    ts: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire = _present_fields(self)
        if not self.attributes:
            wire.pop("attributes")
        return wire


def _present_fields(record: Any) -> dict[str, Any]:
    """The fields that are set; values are plain (strings, numbers, a str map),
    so no deep copy (dataclasses.asdict's made it the producer's main cost)."""
    return {f.name: value for f in fields(record) if (value := getattr(record, f.name)) is not None}


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float
    because: str | None = None  # the recent item it is most like, when explanations are asked for
    source: str | None = None  # what ranked it (towers, neighbours, popularity), when explanations are asked for

    def to_wire(self) -> dict[str, Any]:
        wire = {"item_id": self.item_id, "score": round(self.score, 6)}
        if self.because is not None:
            wire["because"] = self.because
        if self.source is not None:
            wire["source"] = self.source
        return wire


@dataclass(frozen=True, slots=True)
class Recommendation:
    user_id: str
    items: tuple[ScoredItem, ...]
    model_version: str
    trigger_event_id: str | None
    ts: float
    latency_ms: float
    recommendation_id: str  # the shop sends it back on the clicks and purchases the answer led to

    def to_wire(self) -> dict[str, Any]:
        # Written out, not dataclasses.asdict: its deep copy was most of a publish's cost.
        return {
            "user_id": self.user_id,
            "items": [item.to_wire() for item in self.items],
            "model_version": self.model_version,
            "trigger_event_id": self.trigger_event_id,
            "ts": self.ts,
            "latency_ms": self.latency_ms,
            "recommendation_id": self.recommendation_id,
        }


@dataclass(frozen=True, slots=True)
class Forget:
    """A control record: remove `user_id` (as stored: pseudonymised when that
    is on) from every table, replica, cache and topic key the product keeps."""

    user_id: str
    ts: float  # when it was asked for (wall clock)

    def to_wire(self) -> dict[str, Any]:
        return {"type": FORGET, "user_id": self.user_id, "ts": self.ts}


FORGET = "forget"


def _require(value: Any, name: str) -> Any:
    if value is None:
        raise InvalidRecord(f"missing required field '{name}'")
    return value


def show(value: Any) -> str:
    """A short repr for a rejection message, whatever the value's depth or size."""
    return _SHOW.repr(value)


def _string(value: Any, name: str, max_chars: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    _require(value, name)
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{name}' must be a string, got {type(value).__name__} {show(value)}")
    if not value:
        raise InvalidRecord(f"field '{name}' must not be empty")
    if len(value) > max_chars:
        raise InvalidRecord(f"field '{name}' is {len(value)} characters long, the limit is {max_chars}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no UTF-8 for it downstream
            raise InvalidRecord(f"field '{name}' is not valid Unicode text: {show(value)}") from None
    return value


def _number(value: Any, name: str, *, required: bool = True, maximum: float = 1e15) -> float | None:
    if value is None and not required:
        return None
    _require(value, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(f"field '{name}' must be a number, got {type(value).__name__} {show(value)}")
    if not 0 <= value < maximum:  # also false for NaN; checked before float() can overflow
        raise InvalidRecord(f"field '{name}' must be a finite number >= 0 and < {maximum:g}, got {show(value)}")
    return float(value)


def _time(value: Any, name: str, limits: Limits, *, required: bool = True) -> float | None:
    """A Unix time in seconds, at most `max_future_s` ahead of the wall clock."""
    ts = _number(value, name, required=required, maximum=MAX_TS)
    if ts is not None and ts > limits.latest_ts():
        raise InvalidRecord(
            f"field '{name}' is {ts - time.time():,.0f} s in the future, the limit is {limits.max_future_s:,.0f} s "
            "(STREAMREC_MAX_FUTURE_S): is the producer's clock, or its unit, wrong?"
        )
    return ts


def _mapping(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidRecord(f"{what} must be a map, got {type(value).__name__} {show(value)}")
    return value


def validate_event(value: Any, limits: Limits) -> Event:
    """A decoded map as an Event, or InvalidRecord saying what is wrong.

    The common case (the five required fields, well formed) is checked inline;
    anything else takes the full path that explains what is wrong.
    """
    if type(value) is dict and len(value) == 5:
        get = value.get
        event_id, kind, user_id, item_id, ts = get("event_id"), get("type"), get("user_id"), get("item_id"), get("ts")
        ids = limits.max_id_chars
        if (
            type(event_id) is str
            and type(user_id) is str
            and type(item_id) is str
            and 0 < len(event_id) <= ids
            and 0 < len(user_id) <= ids
            and 0 < len(item_id) <= ids
            and event_id.isascii()
            and user_id.isascii()
            and item_id.isascii()
            and (kind == "click" or kind == "purchase")
            and (type(ts) is float or type(ts) is int)
            and 0.0 <= ts <= limits.latest_ts()
        ):
            return Event(event_id, kind, user_id, item_id, float(ts))
    return _validate_event_fully(value, limits)


def _validate_event_fully(value: Any, limits: Limits) -> Event:
    value = _mapping(value, "an event")
    get = value.get
    kind = _require(get("type"), "type")
    if kind not in EVENT_TYPES:
        raise InvalidRecord(f"field 'type' must be one of {', '.join(EVENT_TYPES)}, got {show(kind)}")
    quantity = get("quantity")
    if quantity is not None and (
        isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY
    ):
        raise InvalidRecord(f"field 'quantity' must be an integer from 1 to {MAX_QUANTITY:,}, got {show(quantity)}")
    ids = limits.max_id_chars
    return Event(
        event_id=_string(get("event_id"), "event_id", ids),
        type=kind,
        user_id=_string(get("user_id"), "user_id", ids),
        item_id=_string(get("item_id"), "item_id", ids),
        ts=_time(get("ts"), "ts", limits),
        session_id=_string(get("session_id"), "session_id", ids, required=False),
        price=_number(get("price"), "price", required=False),
        quantity=quantity,
        query=_string(get("query"), "query", limits.max_text_chars, required=False),
        recommendation_id=_recommendation_id(get("recommendation_id")),
    )


def _recommendation_id(value: Any) -> str | None:
    found = _string(value, "recommendation_id", MAX_RECOMMENDATION_ID_CHARS, required=False)
    if found is not None and arm_of(found) is None:
        raise InvalidRecord(
            f"field 'recommendation_id' must be an id an answer carried (placement~experiment~variant~nonce), "
            f"got {show(found)}"
        )
    return found


def validate_item(value: Any, limits: Limits) -> Item:
    """A decoded map as a catalog Item, or InvalidRecord saying what is wrong."""
    value = _mapping(value, "an item")
    get = value.get
    in_stock = get("in_stock", True)
    if not isinstance(in_stock, bool):
        raise InvalidRecord(f"field 'in_stock' must be true or false, got {show(in_stock)}")
    attributes = _mapping(get("attributes") or {}, "field 'attributes'")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidRecord(f"field 'attributes' has {len(attributes)} entries, the limit is {MAX_ATTRIBUTES}")
    for key, attr in attributes.items():
        _string(key, "attributes key", MAX_ATTRIBUTE_CHARS)
        _string(attr, f"attributes[{key!r}]", MAX_ATTRIBUTE_CHARS)
    return Item(
        item_id=_string(get("item_id"), "item_id", limits.max_id_chars),
        title=_string(get("title"), "title", limits.max_text_chars),
        category=_string(get("category"), "category", limits.max_id_chars),
        price=_number(get("price"), "price", required=False),
        in_stock=in_stock,
        ts=_time(get("ts"), "ts", limits, required=False),
        attributes=dict(attributes),
    )


def validate_control(value: Any, limits: Limits) -> Forget:
    """A decoded map as a control record (only `forget` exists), or InvalidRecord."""
    value = _mapping(value, "a control record")
    if value.get("type") != FORGET:
        raise InvalidRecord(f"field 'type' must be {FORGET!r}, got {show(value.get('type'))}")
    user_id = _string(value.get("user_id"), "user_id", limits.max_id_chars)
    return Forget(user_id, _time(value.get("ts"), "ts", limits))
