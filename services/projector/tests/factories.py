"""Events for the projector's tests, as the store and the relay would deliver them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fulfilment.events import (
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PlacedLine,
    ProductRegistered,
    StockReceived,
    StockReserved,
)
from projector_service.events import ProjectedEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def projected(stream_id: str, version: int, data: Event, *, position: int | None = None) -> ProjectedEvent:
    return ProjectedEvent(
        stream_id=stream_id,
        version=version,
        position=position if position is not None else version + 1,
        event_id=str(uuid.uuid4()),
        event_type=type(data).__name__,
        recorded_at=T0 + timedelta(seconds=version),
        data=data,
    )


def registered(sku: str, name: str, *, unit_price: int = 1250, currency: str = "EUR") -> ProductRegistered:
    """A product registered with a price, as the command service registers them."""
    return ProductRegistered(sku=sku, name=name, unit_price=unit_price, currency=currency)


def placed(order_id: uuid.UUID, *, customer: str = "c1", skus: tuple[str, ...] = ("mug",)) -> OrderPlaced:
    lines = tuple(PlacedLine(sku=sku, quantity=2, unit_price=500, line_total=1000) for sku in skus)
    return OrderPlaced(
        order_id=order_id, customer_id=customer, lines=lines, currency="EUR", total=1000 * len(skus)
    )


def order_history(order_id: uuid.UUID, *, customer: str = "c1", cancel: bool = False) -> list[ProjectedEvent]:
    stream = f"order-{order_id}"
    events: list[Event] = [placed(order_id, customer=customer), OrderConfirmed(order_id=order_id)]
    if cancel:
        events.append(OrderCancelled(order_id=order_id, cancelled_by=customer, reason="changed my mind"))
    return [projected(stream, version, data) for version, data in enumerate(events)]


def stock_history(sku: str, order_id: uuid.UUID) -> list[ProjectedEvent]:
    events: list[Event] = [
        registered(sku, f"Blue {sku}"),
        StockReceived(sku=sku, quantity=10, on_hand=10),
        StockReserved(sku=sku, order_id=order_id, quantity=3, available=7),
    ]
    return [projected(f"stock-{sku}", version, data) for version, data in enumerate(events)]
