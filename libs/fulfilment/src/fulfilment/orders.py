"""The order aggregate: place, confirm, reject, cancel.

A placed order is `pending` until the saga confirms or rejects it; its customer may
cancel it while pending or confirmed, never once rejected. Repeating a transition
already made decides nothing, so the saga's retries are harmless. Totals are
computed here, never taken from a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import msgspec

from fulfilment.errors import Conflict, InvalidCommand, NotFound
from fulfilment.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderEvent,
    OrderPlaced,
    OrderRejected,
    PlacedLine,
)
from fulfilment.stock import StockItem
from fulfilment.values import (
    MAX_LINES,
    CurrencyCode,
    CustomerId,
    Quantity,
    Reason,
    Sku,
    normalise_sku,
)

__all__ = [
    "CancelOrder",
    "ConfirmOrder",
    "Order",
    "OrderCommand",
    "OrderLine",
    "OrderStatus",
    "PlaceOrder",
    "RejectOrder",
    "decide",
    "evolve",
]


class OrderLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the customer asks for: a SKU and how many. The price is the catalogue's."""

    sku: Sku
    quantity: Quantity


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Place an order; `catalogue` holds the stock item of each line's SKU (canonical) as read now.

    A SKU missing from `catalogue` is not registered.
    """

    order_id: UUID
    customer_id: CustomerId
    lines: Annotated[tuple[OrderLine, ...], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    currency: CurrencyCode
    catalogue: Mapping[str, StockItem] = msgspec.field(default_factory=dict)


class ConfirmOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID


class RejectOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    reason: Reason


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    customer_id: CustomerId
    reason: Reason | None = None


type OrderCommand = PlaceOrder | ConfirmOrder | RejectOrder | CancelOrder


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """An order as far as deciding needs it; `None` stands for an order not placed yet.

    `lines` maps each SKU on the order to the quantity ordered.
    """

    order_id: UUID
    customer_id: str
    currency: str
    total: int
    status: OrderStatus
    lines: Mapping[str, int] = msgspec.field(default_factory=dict)


def decide(state: Order | None, command: OrderCommand) -> list[OrderEvent]:
    """The events `command` causes on an order in `state`, or a `DomainError` refusing it."""
    match command:
        case PlaceOrder():
            return _place(state, command)
        case ConfirmOrder():
            order = _existing(state, command.order_id)
            if order.status is OrderStatus.CONFIRMED:
                return []
            _require_pending(order, "confirm")
            return [OrderConfirmed(order_id=order.order_id)]
        case RejectOrder():
            order = _existing(state, command.order_id)
            if order.status is OrderStatus.REJECTED:
                return []
            if order.status is OrderStatus.CONFIRMED:
                # Its own code: the saga tells from it that the `confirm` it sent before compensating won.
                raise Conflict(
                    "order-confirmed", f"cannot reject order {order.order_id}: it is confirmed (cancel it)"
                )
            _require_pending(order, "reject")
            return [OrderRejected(order_id=order.order_id, reason=command.reason)]
        case CancelOrder():
            return _cancel(_existing(state, command.order_id), command)


def evolve(state: Order | None, event: OrderEvent) -> Order | None:
    """The order after `event`."""
    match event:
        case OrderPlaced():
            return Order(
                order_id=event.order_id,
                customer_id=event.customer_id,
                currency=event.currency,
                total=event.total,
                status=OrderStatus.PENDING,
                lines={line.sku: line.quantity for line in event.lines},
            )
        case OrderConfirmed():
            return msgspec.structs.replace(_placed(state), status=OrderStatus.CONFIRMED)
        case OrderRejected():
            return msgspec.structs.replace(_placed(state), status=OrderStatus.REJECTED)
        case OrderCancelled():
            return msgspec.structs.replace(_placed(state), status=OrderStatus.CANCELLED)


def _place(state: Order | None, command: PlaceOrder) -> list[OrderEvent]:
    if state is not None:
        raise Conflict("order-already-placed", f"order {command.order_id} was already placed")
    if not 1 <= len(command.lines) <= MAX_LINES:
        raise InvalidCommand("order-lines-count", f"an order has 1 to {MAX_LINES} lines")
    # What the command says about itself first, then what the catalogue says of each line.
    seen: set[str] = set()
    for line in command.lines:
        sku = normalise_sku(line.sku)
        if sku in seen:
            raise InvalidCommand("duplicate-order-line", f"SKU {sku} appears on more than one line")
        if line.quantity < 1:
            raise InvalidCommand("invalid-order-line", f"SKU {sku}: quantity must be at least 1")
        seen.add(sku)
    lines: list[PlacedLine] = []
    for line in command.lines:
        sku = normalise_sku(line.sku)
        unit_price = _price(command.catalogue.get(sku), sku, command.currency)
        line_total = line.quantity * unit_price
        lines.append(
            PlacedLine(sku=sku, quantity=line.quantity, unit_price=unit_price, line_total=line_total)
        )
    return [
        OrderPlaced(
            order_id=command.order_id,
            customer_id=command.customer_id,
            lines=tuple(lines),
            currency=command.currency,
            total=sum(line.line_total for line in lines),
        )
    ]


def _price(item: StockItem | None, sku: str, currency: str) -> int:
    """The unit price of `sku` for an order in `currency`, or why it cannot be ordered."""
    if item is None:
        raise InvalidCommand("unknown-product", f"product {sku} is not in the catalogue")
    if not item.active:
        raise Conflict("product-inactive", f"product {sku} is no longer for sale")
    if item.unit_price is None or item.currency is None:
        raise Conflict("product-not-priced", f"product {sku} has no price yet, so it is not for sale")
    if item.currency != currency:
        raise Conflict(
            "product-currency-mismatch",
            f"product {sku} is priced in {item.currency}, the order is in {currency}",
        )
    return item.unit_price


def authorize(state: Order | None, command: OrderCommand) -> None:
    """Refuse a customer's command on an order that is not theirs, exactly as if there were no order.

    Run before anything else about the stream (its version too, see `Decider.authorize`): an answer
    that differed for someone else's order would tell a stranger that it exists.
    """
    if isinstance(command, CancelOrder) and (state is None or state.customer_id != command.customer_id):
        raise NotFound("order-not-found", f"order {command.order_id} does not exist")


def _cancel(order: Order, command: CancelOrder) -> list[OrderEvent]:
    authorize(order, command)
    if order.status is OrderStatus.CANCELLED:
        return []
    if order.status is OrderStatus.REJECTED:
        raise Conflict("order-not-cancellable", "a rejected order cannot be cancelled")
    return [OrderCancelled(order_id=order.order_id, cancelled_by=command.customer_id, reason=command.reason)]


def _existing(state: Order | None, order_id: UUID) -> Order:
    if state is None:
        raise NotFound("order-not-found", f"order {order_id} does not exist")
    return state


def _require_pending(order: Order, action: str) -> None:
    if order.status is not OrderStatus.PENDING:
        raise Conflict("order-not-pending", f"cannot {action} an order that is {order.status}")


def _placed(state: Order | None) -> Order:
    # A stream whose first event is not OrderPlaced is corrupt, not a refused command.
    if state is None:
        raise ValueError("order event before OrderPlaced")
    return state
