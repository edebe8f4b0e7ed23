"""The Redis projection, pure: which guarded hash writes each event causes.

A write for stream version `v` applies only when the hash is at `v - 1` (or absent and
`v == 0`), checked inside Redis with the write (`redis_writer.APPLY`), so each event
applies once and in order and relative changes and counts stay exact. A SKU's hash is
also its catalogue entry; an unpriced product has no `unit_price`/`currency` fields
until its first `ProductPriceChanged` (readers take that as "no price").
"""

from __future__ import annotations

from typing import Literal

import msgspec
from fulfilment.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockReceived,
    StockReservationCommitted,
    StockReservationFailed,
    StockReservationReleased,
    StockReserved,
)

from projector_service.events import ProjectedEvent

__all__ = ["CATEGORIES", "GuardedWrite", "RecentOrder", "summary_writes"]

CATEGORIES = ("order", "stock")

_lines = msgspec.json.Encoder()


class RecentOrder(msgspec.Struct, frozen=True):
    """Add an order to its customer's recent orders, scored by placement time in ms."""

    customer_id: str
    order_id: str
    placed_at_ms: int


class GuardedWrite(msgspec.Struct, frozen=True, kw_only=True):
    """Changes to one hash (`kind` + `ident`), applied only if it is at `version - 1`."""

    kind: Literal["order", "stock"]
    ident: str
    version: int
    set: dict[str, str] = {}
    incr: dict[str, int] = {}
    count_status: bool = False  # move the order from its old status's count to its new one
    recent: RecentOrder | None = None


def _time(event: ProjectedEvent) -> str:
    return event.recorded_at.isoformat().replace("+00:00", "Z")


def summary_writes(event: ProjectedEvent) -> list[GuardedWrite]:
    """The writes `event` causes in the Redis read models (none for events they do not show)."""
    data = event.data
    at = _time(event)
    match data:
        case OrderPlaced():
            order_id = str(data.order_id)
            lines = [
                {"sku": line.sku, "quantity": line.quantity, "unit_price": line.unit_price,
                 "line_total": line.line_total}
                for line in data.lines
            ]  # fmt: skip
            fields = {
                "order_id": order_id,
                "customer_id": data.customer_id,
                "status": "pending",
                "total": str(data.total),
                "currency": data.currency,
                "lines": _lines.encode(lines).decode(),
                "placed_at": at,
                "updated_at": at,
            }
            recent = RecentOrder(data.customer_id, order_id, int(event.recorded_at.timestamp() * 1000))
            return [_order(event, fields, recent=recent)]
        case OrderConfirmed():
            return [_order(event, {"status": "confirmed", "updated_at": at})]
        case OrderRejected():
            return [_order(event, {"status": "rejected", "reason": data.reason, "updated_at": at})]
        case OrderCancelled():
            return [_order(event, {"status": "cancelled", "reason": data.reason or "", "updated_at": at})]
        case ProductRegistered():
            fields = {"sku": data.sku, "name": data.name, "on_hand": "0", "available": "0", "active": "1"}
            if data.unit_price is not None and data.currency is not None:
                fields |= {"unit_price": str(data.unit_price), "currency": data.currency}
            return [_stock(event, data.sku, fields)]
        case ProductPriceChanged():
            price = {"unit_price": str(data.unit_price), "currency": data.currency}
            return [_stock(event, data.sku, price)]
        case ProductDeactivated():
            return [_stock(event, data.sku, {"active": "0"})]
        case ProductActivated():
            return [_stock(event, data.sku, {"active": "1"})]
        case StockReceived():
            # The event carries the new physical count but not what is available: that grows
            # by the quantity, a relative change the version guard keeps exact.
            return [_stock(event, data.sku, {"on_hand": str(data.on_hand)}, {"available": data.quantity})]
        case StockReserved() | StockReservationFailed() | StockReservationReleased():
            return [_stock(event, data.sku, {"available": str(data.available)})]
        case StockReservationCommitted():
            return [_stock(event, data.sku, {"on_hand": str(data.on_hand)})]
    return []


def _order(
    event: ProjectedEvent, fields: dict[str, str], *, recent: RecentOrder | None = None
) -> GuardedWrite:
    order_id = event.stream_id.removeprefix("order-")
    return GuardedWrite(
        kind="order", ident=order_id, version=event.version, set=fields, count_status=True, recent=recent
    )


def _stock(
    event: ProjectedEvent, sku: str, fields: dict[str, str], incr: dict[str, int] | None = None
) -> GuardedWrite:
    return GuardedWrite(kind="stock", ident=sku, version=event.version, set=fields, incr=incr or {})
