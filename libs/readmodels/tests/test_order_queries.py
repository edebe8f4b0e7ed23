"""The order search's pure parts: query bodies and cursors."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from readmodels.order_queries import (
    InvalidCursor,
    OrderFilters,
    counts_body,
    decode_cursor,
    encode_cursor,
    search_body,
)


def test_the_customer_is_a_filter_clause_of_the_query_itself() -> None:
    body = search_body(OrderFilters(customer_id="alice", text="customer_id:bob"), "-placed_at", 21)

    assert {"term": {"customer_id": "alice"}} in body["query"]["bool"]["filter"]
    # The text is only ever matched as data, never parsed as query syntax.
    assert "query_string" not in json.dumps(body)
    assert "simple_query_string" not in json.dumps(body)


def test_the_sort_ends_with_the_order_id_in_the_same_direction() -> None:
    assert search_body(OrderFilters(), "-total", 5)["sort"] == [
        {"total": {"order": "desc"}},
        {"order_id": {"order": "desc"}},
    ]
    assert search_body(OrderFilters(), "placed_at", 5)["sort"][1] == {"order_id": {"order": "asc"}}


def test_ranges_and_statuses_become_filter_clauses() -> None:
    filters = OrderFilters(
        statuses=("pending",),
        placed_from=datetime(2026, 1, 1, tzinfo=UTC),
        placed_to=datetime(2026, 2, 1),
        total_min=5,
    )

    clauses = search_body(filters, "-placed_at", 5)["query"]["bool"]["filter"]

    assert {"terms": {"status": ["pending"]}} in clauses
    assert {"range": {"placed_at": {"gte": "2026-01-01T00:00:00Z", "lt": "2026-02-01T00:00:00Z"}}} in clauses
    assert {"range": {"total": {"gte": 5}}} in clauses


def test_placement_times_reach_the_engine_in_utc_whatever_their_offset() -> None:
    # The engines refuse offsets beyond ±18:00; RFC 3339 and Python allow up to ±23:59.
    far_east = timezone(timedelta(hours=18, minutes=1))
    far_west = timezone(-timedelta(hours=23, minutes=59))
    filters = OrderFilters(
        placed_from=datetime(2026, 1, 1, 18, 1, tzinfo=far_east),
        placed_to=datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=far_west),
    )

    clauses = search_body(filters, "-placed_at", 5)["query"]["bool"]["filter"]

    assert {
        "range": {"placed_at": {"gte": "2026-01-01T00:00:00Z", "lt": "2026-01-01T23:59:00.250000Z"}}
    } in clauses


KEY = b"k" * 32


def test_a_cursor_continues_after_the_values_it_was_made_from() -> None:
    filters = OrderFilters(statuses=("pending",))
    cursor = encode_cursor("-placed_at", (1_700_000_000_000, "order-9"), filters, key=KEY)

    assert decode_cursor(cursor, "-placed_at", filters, key=KEY) == (1_700_000_000_000, "order-9")
    assert search_body(filters, "-placed_at", 5, (1, "x"))["search_after"] == [1, "x"]


def test_a_cursor_is_refused_for_another_sort_or_other_filters() -> None:
    cursor = encode_cursor("-placed_at", (1, "a"), OrderFilters(), key=KEY)

    with pytest.raises(InvalidCursor, match="sort"):
        decode_cursor(cursor, "total", OrderFilters(), key=KEY)
    with pytest.raises(InvalidCursor, match="filters"):
        decode_cursor(cursor, "-placed_at", OrderFilters(customer_id="bob"), key=KEY)


@pytest.mark.parametrize("cursor", ["", "!!!", "e30", "W10", "WyItcGxhY2VkX2F0IixbMSwyXSwiIl0"])
def test_a_cursor_that_was_not_handed_out_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "-placed_at", OrderFilters(), key=KEY)


def _unkeyed(sort: str, after: tuple[int, str], filters: OrderFilters) -> str:
    """A cursor as anyone can make it without the key: the state and an unkeyed hash of the filters."""
    fingerprint = hashlib.blake2b(msgspec.json.encode(filters), digest_size=8).hexdigest()
    raw = msgspec.json.encode([sort, after, fingerprint])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_cursor_made_without_the_key_is_refused() -> None:
    filters = OrderFilters(customer_id="alice")

    with pytest.raises(InvalidCursor, match="not a cursor this service handed out"):
        decode_cursor(_unkeyed("-placed_at", (2**62, "zzz"), filters), "-placed_at", filters, key=KEY)


def test_a_cursor_altered_after_it_was_handed_out_is_refused() -> None:
    filters = OrderFilters(customer_id="alice")
    cursor = encode_cursor("-placed_at", (1_700_000_000_000, "order-9"), filters, key=KEY)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    altered = raw.replace(b"1700000000000", b"1800000000000")
    assert altered != raw

    with pytest.raises(InvalidCursor):
        decode_cursor(base64.urlsafe_b64encode(altered).decode(), "-placed_at", filters, key=KEY)


def test_a_cursor_signed_with_another_key_is_refused() -> None:
    cursor = encode_cursor("-placed_at", (1, "a"), OrderFilters(), key=b"o" * 32)

    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "-placed_at", OrderFilters(), key=KEY)


def test_counts_aggregate_by_status_over_the_same_filters() -> None:
    body = counts_body(OrderFilters(customer_id="alice"))

    assert body["size"] == 0
    assert body["aggs"]["status"]["terms"]["field"] == "status"
    assert {"term": {"customer_id": "alice"}} in body["query"]["bool"]["filter"]
