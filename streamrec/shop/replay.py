"""Real interaction logs (CSV) as streamrec events and catalog items.

The log is read whole, sorted by time and sent in that order; the catalog file,
when given, is sent (and acknowledged) first so that the worker knows each
item's category before the first click on it. Event ids are derived from the
file's row numbers, so replaying the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streamrec.foundation.schema import Event, InvalidRecord, Item, Limits, validate_event, validate_item
from streamrec.shop.producer import ShopProducer


class ReplayError(ValueError):
    """A log that cannot be replayed as asked; the message says where and why."""


@dataclass(frozen=True)
class EventColumns:
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    type: str | None = None  # values 'click'/'purchase' (also 'view', 'buy', 'transaction'...)
    rating: str | None = None  # with purchase_threshold: rating >= threshold is a purchase
    purchase_threshold: float | None = None


@dataclass(frozen=True)
class ItemColumns:
    id: str = "item_id"
    title: str = "title"
    category: str = "category"
    category_sep: str = "|"


_PURCHASE_WORDS = frozenset({"purchase", "buy", "bought", "transaction", "order", "checkout"})
_RETURN_WORDS = frozenset({"return", "returned", "refund", "cancel", "cancelled", "cancellation"})  # left out


def _sniff(handle) -> csv.Dialect | type[csv.Dialect]:
    sample = handle.read(64 * 1024)
    handle.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, dialect=_sniff(handle))
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ReplayError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are {reader.fieldnames}")
        yield from enumerate(reader, start=2)


def parse_time(text: str) -> float:
    """Unix seconds (or milliseconds, when too large for seconds) or an ISO 8601 date."""
    try:
        number = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return number / 1000.0 if number > 1e11 else number


def read_items(path: Path, columns: ItemColumns, limits: Limits) -> list[Item]:
    """Catalog items; the first of a `|`-separated genre list is the category and
    the whole list is kept in `attributes['genres']`."""
    items = []
    for line, row in _rows(path, [columns.id, columns.title, columns.category]):
        genres = [g.strip() for g in row[columns.category].split(columns.category_sep) if g.strip()]
        wire = {
            "item_id": row[columns.id].strip(),
            "title": row[columns.title].strip(),
            "category": genres[0] if genres else "unknown",
        }
        if len(genres) > 1:
            wire["attributes"] = {"genres": "|".join(genres)[:256]}
        try:
            items.append(validate_item(wire, limits))
        except InvalidRecord as exc:
            raise ReplayError(f"{path}:{line}: {exc}") from None
    return items


def read_events(path: Path, columns: EventColumns, limits: Limits) -> list[Event]:
    """The log's interactions as events, sorted by time (stable for ties). A
    return (a type column saying return, refund or cancel) is no sign of
    interest in the item, so it is left out rather than read as a click."""
    if columns.rating and columns.purchase_threshold is None:
        raise ReplayError("--rating-col needs --purchase-threshold (ratings at or above it are purchases)")
    required = [columns.user, columns.item, columns.time, *(c for c in (columns.type, columns.rating) if c)]
    source = hashlib.sha1(path.name.encode()).hexdigest()[:8]
    events = []
    for line, row in _rows(path, required):
        if columns.type and row[columns.type].strip().lower() in _RETURN_WORDS:
            continue
        try:
            wire = {
                "event_id": f"r{source}-{line}",
                "type": _event_type(row, columns),
                "user_id": row[columns.user].strip(),
                "item_id": row[columns.item].strip(),
                "ts": parse_time(row[columns.time]),
            }
            events.append(validate_event(wire, limits))
        except (InvalidRecord, ValueError) as exc:
            raise ReplayError(f"{path}:{line}: {exc}") from None
    events.sort(key=lambda e: e.ts)
    return events


def _event_type(row: dict[str, str], columns: EventColumns) -> str:
    if columns.rating:
        return "purchase" if float(row[columns.rating]) >= columns.purchase_threshold else "click"
    if columns.type:
        return "purchase" if row[columns.type].strip().lower() in _PURCHASE_WORDS else "click"
    return "click"


def bare_catalog(events: list[Event]) -> list[Item]:
    """A log without an item file still needs a catalog (only catalog items are
    recommended): each item id becomes an item titled by its id, category
    `unknown`."""
    return [Item(item_id, item_id, "unknown") for item_id in dict.fromkeys(e.item_id for e in events)]


async def send_replay(
    producer: ShopProducer,
    events: list[Event],
    items: list[Item],
    on_progress: Callable[[int], None] = lambda sent: None,
) -> None:
    """The catalog first (flushed, so it is on the broker before any event), then the events."""
    await producer.send_catalog(items)
    for sent, event in enumerate(events, start=1):
        await producer.send_event(event)
        if sent % 5000 == 0:
            on_progress(sent)
    await producer.flush()
    on_progress(len(events))
