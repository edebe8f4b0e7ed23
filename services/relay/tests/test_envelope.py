"""The CloudEvents envelope of one event (pure: no servers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from eventstore import EventDecodeError, EventRegistry, Metadata, StoredEvent, UnknownEventType
from fulfilment.registry import build_registry
from relay_service.envelope import HEADERS, to_message, topic_for

REGISTRY = build_registry()
# As PostgreSQL returns a jsonb payload: keys reordered, spaces after separators.
STORED_JSON = (
    b'{"sku": "blue-mug", "name": "Blue mug", "type": "ProductRegistered", '
    b'"currency": "EUR", "unit_price": 1250}'
)
# A registration stored before products had prices: schema version 1.
STORED_V1_JSON = b'{"sku": "blue-mug", "name": "Blue mug", "type": "ProductRegistered"}'


def recorded(
    metadata: Metadata,
    *,
    event_type: str = "ProductRegistered",
    schema_version: int = 2,
    data: bytes = STORED_JSON,
) -> StoredEvent:
    return StoredEvent(
        stream_id="stock-blue-mug",
        version=4,
        position=1234,
        transaction_id=99,
        event_id=uuid.UUID("4f0c5a8e-6f1e-4a7b-9a51-3e0f1b2c3d4e"),
        event_type=event_type,
        schema_version=schema_version,
        data=data,
        metadata=metadata,
        recorded_at=datetime(2026, 11, 26, 3, 20, 1, 500000, tzinfo=UTC),
    )


class Greeted(msgspec.Struct, frozen=True, tag="Greeted"):
    """Schema v2: v1 had `name` only."""

    name: str
    loud: bool


def registry_with_upcaster() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Greeted, name="Greeted", version=2)

    @registry.upcaster("Greeted", from_version=1)
    def _add_loud(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "loud": False}

    return registry


def test_binary_mode_puts_attributes_in_headers_and_the_event_json_in_the_value() -> None:
    message = to_message(
        recorded(
            Metadata(correlation_id="c-1", causation_id="k-9", traceparent="00-ab-cd-01", actor="staff:7")
        ),
        REGISTRY,
        source="/fulfilment",
        topic_prefix="fulfilment.",
        dataschema_base="http://relay.test/schemas/",
    )
    headers = {name: value.decode() for name, value in message.headers}
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": "4f0c5a8e-6f1e-4a7b-9a51-3e0f1b2c3d4e",
        "ce_source": "/fulfilment",
        "ce_type": "ProductRegistered",
        "ce_time": "2026-11-26T03:20:01.500000Z",
        "ce_subject": "stock-blue-mug",
        "content-type": "application/json",
        "ce_streamversion": "4",
        "ce_position": "1234",
        "ce_schemaversion": "2",
        "ce_dataschema": "http://relay.test/schemas/ProductRegistered.v2.json",
        "ce_correlationid": "c-1",
        "ce_causationid": "k-9",
        "ce_traceparent": "00-ab-cd-01",
        "ce_actor": "staff:7",
    }
    assert set(headers) == set(HEADERS)  # asyncapi.yaml documents exactly these
    assert msgspec.json.decode(message.value) == {
        "type": "ProductRegistered",
        "sku": "blue-mug",
        "name": "Blue mug",
        "unit_price": 1250,
        "currency": "EUR",
    }


def test_the_key_is_the_stream_id_so_a_stream_keeps_to_one_partition() -> None:
    message = to_message(recorded(Metadata()), REGISTRY, source="/s", topic_prefix="p.")
    assert message.key == b"stock-blue-mug"
    assert message.topic == "p.stock"


def test_absent_optional_attributes_are_left_out_rather_than_sent_empty() -> None:
    names = {
        name for name, _ in to_message(recorded(Metadata()), REGISTRY, source="/s", topic_prefix="p.").headers
    }
    assert not names & {"ce_correlationid", "ce_causationid", "ce_traceparent", "ce_actor"}


def test_topics_follow_the_stream_category() -> None:
    assert topic_for("order-3f2a", "fulfilment.") == "fulfilment.order"
    assert topic_for("payment-3f2a-77", "x.") == "x.payment"


def test_a_payload_at_the_current_version_is_sent_as_stored() -> None:
    message = to_message(recorded(Metadata()), REGISTRY, source="/s", topic_prefix="p.")
    assert message.value == STORED_JSON


def test_an_older_payload_is_upcast_and_the_header_names_the_version_sent() -> None:
    old = recorded(
        Metadata(), event_type="Greeted", schema_version=1, data=b'{"type": "Greeted", "name": "x"}'
    )
    message = to_message(old, registry_with_upcaster(), source="/s", topic_prefix="p.", dataschema_base="/x/")
    assert dict(message.headers)["ce_schemaversion"] == b"2"
    assert dict(message.headers)["ce_dataschema"] == b"/x/Greeted.v2.json"
    assert msgspec.json.decode(message.value) == {"type": "Greeted", "name": "x", "loud": False}


def test_a_registration_stored_before_prices_existed_is_published_as_version_2_without_a_price() -> None:
    old = recorded(Metadata(), schema_version=1, data=STORED_V1_JSON)
    message = to_message(old, REGISTRY, source="/s", topic_prefix="p.", dataschema_base="/schemas/")
    headers = dict(message.headers)
    assert (headers["ce_schemaversion"], headers["ce_dataschema"]) == (
        b"2",
        b"/schemas/ProductRegistered.v2.json",
    )
    assert msgspec.json.decode(message.value) == {
        "type": "ProductRegistered",
        "sku": "blue-mug",
        "name": "Blue mug",
        "unit_price": None,
        "currency": None,
    }


def test_an_older_payload_that_cannot_be_upcast_names_its_stream_and_position() -> None:
    broken = recorded(Metadata(), event_type="Greeted", schema_version=1, data=b'{"type": "Greeted"}')
    with pytest.raises(EventDecodeError) as caught:
        to_message(broken, registry_with_upcaster(), source="/s", topic_prefix="p.")
    assert caught.value.stream_id == "stock-blue-mug"
    assert caught.value.log_position == broken.log_position


def test_an_unregistered_event_type_is_an_error_not_a_guess() -> None:
    with pytest.raises(UnknownEventType):
        to_message(recorded(Metadata(), event_type="Nope"), REGISTRY, source="/s", topic_prefix="p.")
