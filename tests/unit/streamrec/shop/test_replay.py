"""Replaying an interaction log: column mapping, time formats, errors that name file, line and column."""

from __future__ import annotations

import pytest

from streamrec.foundation.schema import Event, Item, Limits
from streamrec.shop.replay import (
    EventColumns,
    ItemColumns,
    ReplayError,
    bare_catalog,
    parse_time,
    read_events,
    read_items,
)


def test_parse_time_accepts_seconds_milliseconds_and_iso():
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time("1700000000000") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0


def test_replay_reads_ratings_as_purchases_in_time_order(tmp_path):
    log = tmp_path / "ratings.csv"
    log.write_text("userId,movieId,rating,timestamp\n1,10,4.5,300\n1,11,2.0,100\n2,10,5.0,200\n")
    events = read_events(
        log, EventColumns("userId", "movieId", "timestamp", rating="rating", purchase_threshold=4.0), Limits()
    )
    assert [(e.user_id, e.item_id, e.type, e.ts) for e in events] == [
        ("1", "11", "click", 100.0),
        ("2", "10", "purchase", 200.0),
        ("1", "10", "purchase", 300.0),
    ]
    again = read_events(
        log, EventColumns("userId", "movieId", "timestamp", rating="rating", purchase_threshold=4.0), Limits()
    )
    assert [e.event_id for e in again] == [e.event_id for e in events]  # replaying twice is absorbed


def test_replay_reads_a_type_column_and_leaves_returns_out(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text("user_id,item_id,timestamp,event\nu,a,100,purchase\nu,b,110,view\nu,a,120,Return\nu,c,130,buy\n")
    events = read_events(log, EventColumns(type="event"), Limits())
    assert [(e.item_id, e.type) for e in events] == [("a", "purchase"), ("b", "click"), ("c", "purchase")]


def test_replay_items_take_the_first_genre_as_category(tmp_path):
    items = tmp_path / "movies.csv"
    items.write_text('movieId,title,genres\n10,"Heat (1995)",Action|Crime|Thriller\n11,Up,Animation\n')
    parsed = read_items(items, ItemColumns("movieId", "title", "genres"), Limits())
    assert parsed[0].category == "Action" and parsed[0].attributes == {"genres": "Action|Crime|Thriller"}
    assert parsed[1].category == "Animation" and parsed[1].attributes == {}


def test_replay_errors_name_file_line_and_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,when\nu1,i1,yesterday\n")
    with pytest.raises(ReplayError, match="no column 'timestamp'"):
        read_events(log, EventColumns("user", "item"), Limits())
    with pytest.raises(ReplayError, match=r"log.csv:2: .*yesterday"):
        read_events(log, EventColumns("user", "item", "when"), Limits())
    with pytest.raises(ReplayError, match="--purchase-threshold"):
        read_events(log, EventColumns("user", "item", "when", rating="r"), Limits())


def test_a_log_without_an_item_file_gets_a_bare_catalog():
    events = [Event(f"e{n}", "click", "u1", item, 10.0 + n) for n, item in enumerate(["i2", "i1", "i2"])]
    assert bare_catalog(events) == [Item("i2", "i2", "unknown"), Item("i1", "i1", "unknown")]
