"""Reading a record of the suite's topics: a good one reads, every hostile one names its reason class."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest
from fulfilment.events import OrderPlaced, PlacedLine, event_name
from fulfilment.records import REASONS, Unreadable, read_envelope, read_payload
from fulfilment.registry import build_registry

from libs.fulfilment.tests.hostile import CASES, PARAMS, Record

ORDER_ID = uuid.uuid4()
PLACED = OrderPlaced(
    order_id=ORDER_ID,
    customer_id="ann",
    lines=(PlacedLine(sku="mug", quantity=1, unit_price=250, line_total=250),),
    currency="EUR",
    total=250,
)


def good_record() -> Record:
    """As the relay writes it (relay_service.envelope)."""
    stream = f"order-{ORDER_ID}"
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"/fulfilment"),
        ("ce_type", event_name(OrderPlaced).encode()),
        ("ce_time", b"2026-12-04T10:00:00.123456Z"),
        ("ce_subject", stream.encode()),
        ("content-type", b"application/json"),
        ("ce_streamversion", b"0"),
        ("ce_position", b"42"),
        ("ce_schemaversion", str(OrderPlaced.schema_version).encode()),
    ]
    return stream.encode(), msgspec.json.encode(PLACED), headers


def read(record: Record) -> object:
    key, value, headers = record
    return read_payload(build_registry(), read_envelope(key, headers), value)


def test_a_record_as_the_relay_writes_it_reads_as_its_event() -> None:
    key, value, headers = good_record()
    envelope = read_envelope(key, headers)
    assert (envelope.stream_id, envelope.version, envelope.position) == (f"order-{ORDER_ID}", 0, 42)
    assert read_payload(build_registry(), envelope, value) == PLACED


def test_every_hostile_case_names_a_known_reason_class() -> None:
    assert {reason for _, reason, _ in CASES} <= set(REASONS)
    assert {reason for _, reason, _ in CASES} == set(REASONS)  # and every class has a case


@pytest.mark.parametrize(("reason", "make"), PARAMS)
def test_a_hostile_record_is_unreadable_for_its_reason(reason: str, make: Callable[[Record], Record]) -> None:
    with pytest.raises(Unreadable) as raised:
        read(make(good_record()))
    assert raised.value.reason == reason


@pytest.mark.parametrize("position", ["²", "٣", "+5", " 5", "-1", "0", "1e3", "9" * 20, "1" * 5000, ""])
def test_a_position_is_a_plain_ascii_decimal_in_bigint_range(position: str) -> None:
    key, value, headers = good_record()
    headers = [(n, v) for n, v in headers if n != "ce_position"] + [("ce_position", position.encode())]
    with pytest.raises(Unreadable) as raised:
        read((key, value, headers))
    assert raised.value.reason == "bad-position"


def test_a_repeated_attribute_and_a_key_that_is_not_the_stream_are_unreadable() -> None:
    key, value, headers = good_record()
    with pytest.raises(Unreadable) as repeated:
        read((key, value, [*headers, ("ce_type", b"OrderCancelled")]))
    assert repeated.value.reason == "bad-headers"
    with pytest.raises(Unreadable) as other_key:
        read((b"order-someone-else", value, headers))
    assert other_key.value.reason == "bad-key"
