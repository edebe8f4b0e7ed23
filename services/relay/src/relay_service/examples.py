"""One sample event of every published type: the examples asyncapi.yaml shows, and a test's input.

The document's examples are not written by hand: they are what `to_message`
makes of these samples, and `tests/test_contract.py` appends the same
samples to a real store, runs the relay and checks that what Kafka holds equals
the examples except for the values each run makes anew (event ids, times,
positions). The samples read like a real flow: the metadata is what the command
service records (the caller's token subject as actor, a correlation id, the
request's trace context).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from eventstore import EventRegistry, Metadata, NewEvent, StoredEvent
from fulfilment.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
    PlacedLine,
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockReceived,
    StockReservationCommitted,
    StockReservationFailed,
    StockReservationReleased,
    StockReserved,
    event_name,
)
from fulfilment.values import order_stream, payment_stream, stock_stream

from relay_service.envelope import KafkaMessage, to_message

__all__ = ["SAMPLE_STREAMS", "example_messages", "sample_events"]

ORDER_ID = uuid.UUID("0b6f3c9e-6a51-4c1e-9f0e-2d7c5b8a4e21")
SKU = "blue-mug"
_RECORDED_AT = datetime(2026, 3, 2, 9, 30, 0, 125000, tzinfo=UTC)
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_CORRELATION = "5f0c2a44-3b1d-4e8a-a0c7-1e9b6d2f8c13"

# Stream id -> its events, in stream order. The store does not judge a stream's story,
# so one stream may hold every type of its category, each at a version of its own.
SAMPLE_STREAMS: dict[str, list[msgspec.Struct]] = {
    order_stream(ORDER_ID): [
        OrderPlaced(
            order_id=ORDER_ID,
            customer_id="alice",
            lines=(PlacedLine(sku=SKU, quantity=2, unit_price=1250, line_total=2500),),
            currency="EUR",
            total=2500,
        ),
        OrderConfirmed(order_id=ORDER_ID),
        OrderRejected(order_id=ORDER_ID, reason="payment declined"),
        OrderCancelled(order_id=ORDER_ID, cancelled_by="alice", reason="ordered twice"),
    ],
    stock_stream(SKU): [
        ProductRegistered(sku=SKU, name="Blue mug", unit_price=1250, currency="EUR"),
        ProductPriceChanged(sku=SKU, unit_price=1390, currency="EUR"),
        ProductDeactivated(sku=SKU, reason="glaze recall"),
        ProductActivated(sku=SKU),
        StockReceived(sku=SKU, quantity=10, on_hand=10),
        StockReserved(sku=SKU, order_id=ORDER_ID, quantity=2, available=8),
        StockReservationFailed(sku=SKU, order_id=ORDER_ID, requested=20, available=8),
        StockReservationReleased(sku=SKU, order_id=ORDER_ID, quantity=2, available=10),
        StockReservationCommitted(sku=SKU, order_id=ORDER_ID, quantity=2, on_hand=8),
    ],
    payment_stream(ORDER_ID): [
        PaymentRequested(order_id=ORDER_ID, amount=2500, currency="EUR"),
        PaymentAuthorized(order_id=ORDER_ID, provider_reference="psp-7f3a91"),
        PaymentDeclined(order_id=ORDER_ID, reason="insufficient funds"),
        PaymentVoided(order_id=ORDER_ID, reason="order cancelled"),
        PaymentRefunded(order_id=ORDER_ID, amount=2500, currency="EUR", provider_reference="psp-7f3a91"),
    ],
}

# Who causes each category's events: a customer orders and pays, a warehouse clerk keeps stock.
_ACTORS = {"order": "alice", "payment": "alice", "stock": "clerk-bob"}


def _metadata(stream_id: str) -> Metadata:
    return Metadata(
        correlation_id=_CORRELATION,
        causation_id=_CORRELATION,
        traceparent=_TRACEPARENT,
        actor=_ACTORS[stream_id.split("-", 1)[0]],
    )


def _event_id(stream_id: str, version: int) -> uuid.UUID:
    return uuid.uuid5(ORDER_ID, f"{stream_id}@{version}")


def sample_events() -> dict[str, list[NewEvent]]:
    """The samples as events to append, stream by stream, with the examples' ids and metadata."""
    return {
        stream: [
            NewEvent(data=data, event_id=_event_id(stream, version), metadata=_metadata(stream))
            for version, data in enumerate(events)
        ]
        for stream, events in SAMPLE_STREAMS.items()
    }


def example_messages(
    registry: EventRegistry, *, source: str, topic_prefix: str, dataschema_base: str
) -> dict[str, KafkaMessage]:
    """The Kafka record of each sample, by event type: as the relay makes it from the stored event."""
    messages: dict[str, KafkaMessage] = {}
    position = 0
    for stream, events in sample_events().items():
        for version, new in enumerate(events):
            position += 1
            stored = StoredEvent(
                stream_id=stream,
                version=version,
                position=position,
                transaction_id=position,
                event_id=new.event_id,
                event_type=event_name(type(new.data)),
                schema_version=registry.current_version(event_name(type(new.data))),
                data=msgspec.json.encode(new.data),
                metadata=new.metadata,
                recorded_at=_RECORDED_AT,
            )
            messages[stored.event_type] = to_message(
                stored, registry, source=source, topic_prefix=topic_prefix, dataschema_base=dataschema_base
            )
    return messages
