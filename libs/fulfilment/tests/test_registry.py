from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import jsonschema
import msgspec
import pytest
from eventstore import EventDecodeError
from fulfilment import superseded
from fulfilment.events import ALL_EVENTS, OrderConfirmed, ProductRegistered, event_name
from fulfilment.registry import build_registry, unpriced_product

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
# A registration as stores written before products had prices hold it (jsonb's key order).
STORED_V1 = b'{"sku": "blue-mug", "name": "Blue mug", "type": "ProductRegistered"}'


def test_every_event_type_is_registered_under_its_name_and_version() -> None:
    registry = build_registry()

    for event_type in ALL_EVENTS:
        assert registry.type_name(event_type) == event_name(event_type)


def test_a_registered_event_round_trips_through_the_registry() -> None:
    registry = build_registry()
    event = OrderConfirmed(order_id=UUID(int=7))

    name, version, data = registry.encode(event)

    assert (name, version) == ("OrderConfirmed", 1)
    assert registry.decode(name, version, data) == event


def test_a_stored_version_1_registration_decodes_to_version_2_with_no_price() -> None:
    registry = build_registry()

    decoded = registry.decode("ProductRegistered", 1, STORED_V1)

    assert decoded == ProductRegistered(sku="blue-mug", name="Blue mug", unit_price=None, currency=None)
    assert registry.current_version("ProductRegistered") == 2


def test_what_the_superseded_class_encodes_is_what_version_1_stored_and_it_upcasts() -> None:
    old = superseded.ProductRegistered(sku="blue-mug", name="Blue mug")
    payload = msgspec.json.encode(old)
    jsonschema.validate(json.loads(payload), json.loads((SCHEMAS / "ProductRegistered.v1.json").read_text()))

    upcast = unpriced_product(json.loads(payload))

    jsonschema.validate(upcast, json.loads((SCHEMAS / "ProductRegistered.v2.json").read_text()))
    assert build_registry().decode("ProductRegistered", 1, payload) == msgspec.convert(
        upcast, ProductRegistered
    )


def test_a_current_registration_is_written_at_version_2_and_reads_back_with_its_price() -> None:
    registry = build_registry()
    event = ProductRegistered(sku="blue-mug", name="Blue mug", unit_price=1250, currency="EUR")

    name, version, data = registry.encode(event)

    assert (name, version) == ("ProductRegistered", 2)
    assert registry.decode(name, version, data) == event


def test_a_version_1_payload_missing_its_name_is_a_decode_error_not_a_product_without_one() -> None:
    with pytest.raises(EventDecodeError):
        build_registry().decode("ProductRegistered", 1, b'{"type": "ProductRegistered", "sku": "blue-mug"}')
