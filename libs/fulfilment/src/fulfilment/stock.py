"""The stock item aggregate, one per SKU: the product's catalogue entry and its stock.

Staff register, reprice, deactivate, activate and receive stock; the saga reserves,
releases and commits units. Reservable is `on_hand - reserved`; a commit lowers both.
Reserve, release and commit are idempotent per order id (the first outcome stands), and
a shortage is recorded as `StockReservationFailed`, not raised. Deactivation stops new
orders, not reservations of placed ones; fit to the order is `fulfilment.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from uuid import UUID

import msgspec

from fulfilment.errors import Conflict, NotFound
from fulfilment.events import (
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockEvent,
    StockReceived,
    StockReservationCommitted,
    StockReservationFailed,
    StockReservationReleased,
    StockReserved,
)
from fulfilment.values import CurrencyCode, Price, ProductName, Quantity, Reason, Sku, normalise_sku

__all__ = [
    "ActivateProduct",
    "ChangePrice",
    "CommitReservation",
    "DeactivateProduct",
    "ReceiveStock",
    "RegisterProduct",
    "ReleaseReservation",
    "ReserveStock",
    "Settlement",
    "StockCommand",
    "StockItem",
    "decide",
    "evolve",
]


class RegisterProduct(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    name: ProductName
    unit_price: Price
    currency: CurrencyCode


class ChangePrice(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    unit_price: Price
    currency: CurrencyCode


class DeactivateProduct(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    reason: Reason | None = None


class ActivateProduct(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku


class ReceiveStock(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    quantity: Quantity


class ReserveStock(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    order_id: UUID
    quantity: Quantity


class ReleaseReservation(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    order_id: UUID


class CommitReservation(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    sku: Sku
    order_id: UUID


type StockCommand = (
    RegisterProduct
    | ChangePrice
    | DeactivateProduct
    | ActivateProduct
    | ReceiveStock
    | ReserveStock
    | ReleaseReservation
    | CommitReservation
)


class Settlement(StrEnum):
    """How an order's reservation ended, once it is no longer held."""

    FAILED = "failed"
    RELEASED = "released"
    COMMITTED = "committed"


class StockItem(msgspec.Struct, frozen=True, kw_only=True):
    """A SKU's catalogue entry and stock as far as deciding needs it; `None`: not registered yet.

    Snapshots of this state taken before products had prices decode with no price and
    active, which is what those products were.
    """

    sku: str
    name: str
    unit_price: int | None = None
    currency: str | None = None
    active: bool = True
    on_hand: int = 0
    reservations: Mapping[UUID, int] = msgspec.field(default_factory=dict)
    settled: Mapping[UUID, Settlement] = msgspec.field(default_factory=dict)

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def for_sale(self) -> bool:
        """Can an order be placed for it now: active and priced."""
        return self.active and self.unit_price is not None


def decide(state: StockItem | None, command: StockCommand) -> list[StockEvent]:
    """The events `command` causes on a stock item in `state`, or a `DomainError` refusing it."""
    sku = normalise_sku(command.sku)
    match command:
        case RegisterProduct():
            if state is not None:
                raise Conflict("product-already-registered", f"product {sku} is already registered")
            return [
                ProductRegistered(
                    sku=sku, name=command.name, unit_price=command.unit_price, currency=command.currency
                )
            ]
        case ChangePrice():
            item = _registered(state, sku)
            if (item.unit_price, item.currency) == (command.unit_price, command.currency):
                return []
            return [ProductPriceChanged(sku=sku, unit_price=command.unit_price, currency=command.currency)]
        case DeactivateProduct():
            item = _registered(state, sku)
            return [ProductDeactivated(sku=sku, reason=command.reason)] if item.active else []
        case ActivateProduct():
            item = _registered(state, sku)
            return [] if item.active else [ProductActivated(sku=sku)]
        case ReceiveStock():
            item = _registered(state, sku)
            return [
                StockReceived(sku=sku, quantity=command.quantity, on_hand=item.on_hand + command.quantity)
            ]
        case ReserveStock():
            return _reserve(_registered(state, sku), command)
        case ReleaseReservation():
            return _release(_registered(state, sku), command.order_id)
        case CommitReservation():
            return _commit(_registered(state, sku), command.order_id)


def evolve(state: StockItem | None, event: StockEvent) -> StockItem | None:
    """The stock item after `event`."""
    match event:
        case ProductRegistered():
            return StockItem(
                sku=event.sku, name=event.name, unit_price=event.unit_price, currency=event.currency
            )
        case ProductPriceChanged():
            return msgspec.structs.replace(
                _known(state), unit_price=event.unit_price, currency=event.currency
            )
        case ProductDeactivated():
            return msgspec.structs.replace(_known(state), active=False)
        case ProductActivated():
            return msgspec.structs.replace(_known(state), active=True)
        case StockReceived():
            item = _known(state)
            return msgspec.structs.replace(item, on_hand=item.on_hand + event.quantity)
        case StockReserved():
            item = _known(state)
            return msgspec.structs.replace(
                item, reservations={**item.reservations, event.order_id: event.quantity}
            )
        case StockReservationFailed():
            return _settle(_known(state), event.order_id, Settlement.FAILED)
        case StockReservationReleased():
            return _settle(_known(state), event.order_id, Settlement.RELEASED)
        case StockReservationCommitted():
            item = _settle(_known(state), event.order_id, Settlement.COMMITTED)
            return msgspec.structs.replace(item, on_hand=item.on_hand - event.quantity)


def _registered(state: StockItem | None, sku: str) -> StockItem:
    if state is None:
        raise NotFound("product-not-found", f"product {sku} is not registered")
    return state


def _known(state: StockItem | None) -> StockItem:
    # A stream whose first event is not ProductRegistered is corrupt, not a refused command.
    if state is None:
        raise ValueError("stock event before ProductRegistered")
    return state


def _reserve(state: StockItem, command: ReserveStock) -> list[StockEvent]:
    if command.order_id in state.reservations or command.order_id in state.settled:
        return []
    if command.quantity > state.available:
        return [
            StockReservationFailed(
                sku=state.sku,
                order_id=command.order_id,
                requested=command.quantity,
                available=state.available,
            )
        ]
    return [
        StockReserved(
            sku=state.sku,
            order_id=command.order_id,
            quantity=command.quantity,
            available=state.available - command.quantity,
        )
    ]


def _release(state: StockItem, order_id: UUID) -> list[StockEvent]:
    if state.settled.get(order_id) is Settlement.COMMITTED:
        raise Conflict("reservation-committed", f"the reservation of order {order_id} was already committed")
    quantity = state.reservations.get(order_id)
    # Nothing held (never reserved, failed, or already released): a compensation that has nothing to undo.
    if quantity is None:
        return []
    return [
        StockReservationReleased(
            sku=state.sku, order_id=order_id, quantity=quantity, available=state.available + quantity
        )
    ]


def _commit(state: StockItem, order_id: UUID) -> list[StockEvent]:
    if state.settled.get(order_id) is Settlement.COMMITTED:
        return []
    quantity = state.reservations.get(order_id)
    if quantity is None:
        raise Conflict("no-reservation", f"order {order_id} holds no reservation of {state.sku}")
    return [
        StockReservationCommitted(
            sku=state.sku, order_id=order_id, quantity=quantity, on_hand=state.on_hand - quantity
        )
    ]


def _settle(state: StockItem, order_id: UUID, how: Settlement) -> StockItem:
    reservations = {key: value for key, value in state.reservations.items() if key != order_id}
    return msgspec.structs.replace(state, reservations=reservations, settled={**state.settled, order_id: how})
