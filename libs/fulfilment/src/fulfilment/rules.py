"""Rules across aggregates: a step of the order flow checked against the order it belongs to.

The saga's reservations, payments, commits, confirmations and refunds must fit the
order they name; the caller reads the streams named and passes their states here before
deciding, and a refusal is a `DomainError`. States are read, not locked: a race with a
cancellation is the saga's to compensate (`docs/architecture.md`, "Business rules").
Facts from the payment provider and compensations are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from fulfilment.errors import Conflict, InvalidCommand
from fulfilment.orders import Order, OrderStatus
from fulfilment.payments import Payment, PaymentStatus
from fulfilment.stock import Settlement, StockItem

__all__ = [
    "check_commit",
    "check_confirmation",
    "check_payment_request",
    "check_refund",
    "check_reservation",
]


def check_reservation(order: Order | None, order_id: UUID, sku: str, quantity: int) -> None:
    """A reservation is for a pending order, a SKU on it, and exactly the quantity ordered."""
    placed = _known(order, order_id)
    _require_pending(placed, "reserve stock for")
    ordered = placed.lines.get(sku)
    if ordered is None:
        raise Conflict("sku-not-in-order", f"order {order_id} has no line for {sku}")
    if quantity != ordered:
        raise Conflict(
            "reservation-quantity-mismatch",
            f"order {order_id} ordered {ordered} of {sku}, the reservation is for {quantity}",
        )


def check_payment_request(order: Order | None, order_id: UUID, amount: int, currency: str) -> None:
    """A payment is requested for a pending order, of its total in its currency."""
    placed = _known(order, order_id)
    _require_pending(placed, "request payment for")
    if (amount, currency) != (placed.total, placed.currency):
        raise Conflict(
            "payment-amount-mismatch",
            f"order {order_id} totals {placed.total} {placed.currency}, "
            f"the payment is for {amount} {currency}",
        )


def check_commit(order: Order | None, order_id: UUID, payment: Payment | None) -> None:
    """Units leave the warehouse only for an order still going ahead, once it is paid."""
    placed = _known(order, order_id)
    if placed.status not in (OrderStatus.PENDING, OrderStatus.CONFIRMED):
        raise Conflict("order-not-active", f"order {order_id} is {placed.status}: nothing ships for it")
    _require_paid(placed, payment)


def check_confirmation(order: Order, payment: Payment | None, stock: Mapping[str, StockItem | None]) -> None:
    """An order is confirmed once its payment is authorised and every line's units are reserved.

    `stock` holds the stock item of each SKU on the order. An order that is not
    pending is left to the order's own rules (confirmed already: nothing to do;
    cancelled or rejected: refused as such).
    """
    if order.status is not OrderStatus.PENDING:
        return
    _require_paid(order, payment)
    for sku, quantity in order.lines.items():
        item = stock.get(sku)
        held = item.reservations.get(order.order_id) if item else None
        shipped = item is not None and item.settled.get(order.order_id) is Settlement.COMMITTED
        if held != quantity and not shipped:
            raise Conflict(
                "order-not-reserved", f"order {order.order_id} holds no reservation of {quantity} {sku}"
            )


def check_refund(order: Order | None, payment: Payment | None, amount: int | None) -> None:
    """Refunds are of the whole captured amount, and not of an order that is still confirmed.

    `amount` is what the caller asked to refund, if it said: more than was captured is
    refused, and so is less (a refund is always of the whole payment).
    """
    if payment is not None and amount is not None and payment.status is PaymentStatus.AUTHORIZED:
        if amount > payment.amount:
            raise Conflict(
                "refund-exceeds-captured",
                f"{amount} is more than the {payment.amount} {payment.currency} captured",
            )
        if amount < payment.amount:
            raise InvalidCommand(
                "partial-refund-unsupported",
                f"a refund is of the whole {payment.amount} {payment.currency} captured",
            )
    if order is not None and order.status is OrderStatus.CONFIRMED:
        raise Conflict(
            "order-confirmed", f"order {order.order_id} is confirmed: cancel it before refunding its payment"
        )


def _known(order: Order | None, order_id: UUID) -> Order:
    if order is None:
        raise InvalidCommand("unknown-order", f"order {order_id} does not exist")
    return order


def _require_pending(order: Order, action: str) -> None:
    if order.status is not OrderStatus.PENDING:
        raise Conflict("order-not-pending", f"cannot {action} order {order.order_id}: it is {order.status}")


def _require_paid(order: Order, payment: Payment | None) -> None:
    if payment is None or payment.status is not PaymentStatus.AUTHORIZED:
        state = "no payment was requested" if payment is None else f"its payment is {payment.status}"
        raise Conflict("order-not-paid", f"order {order.order_id} is not paid: {state}")
    if (payment.amount, payment.currency) != (order.total, order.currency):
        raise Conflict(
            "order-not-paid",
            f"order {order.order_id} totals {order.total} {order.currency}, "
            f"its payment is of {payment.amount} {payment.currency}",
        )
