"""The events of the three aggregates: the facts other services consume.

Frozen msgspec Structs tagged by name (`type` in JSON), each with a `schema_version`;
(name, version) identifies a shape in the store and in `schemas/`. An incompatible
change keeps the old class under a new Python name and adds an upcaster
(`fulfilment.registry`). Unknown fields are allowed, so older consumers keep reading.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

import msgspec

from fulfilment.values import (
    Amount,
    CanonicalSku,
    MinorUnits,
    Price,
    Quantity,
    RecordedCurrencyCode,
    RecordedCustomerId,
    RecordedProductName,
    RecordedProviderReference,
    RecordedReason,
    StockLevel,
    Total,
)

__all__ = [
    "ALL_EVENTS",
    "Event",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderEvent",
    "OrderPlaced",
    "OrderRejected",
    "PaymentAuthorized",
    "PaymentDeclined",
    "PaymentEvent",
    "PaymentRefunded",
    "PaymentRequested",
    "PaymentVoided",
    "PlacedLine",
    "ProductActivated",
    "ProductDeactivated",
    "ProductPriceChanged",
    "ProductRegistered",
    "StockEvent",
    "StockReceived",
    "StockReservationCommitted",
    "StockReservationFailed",
    "StockReservationReleased",
    "StockReserved",
    "event_name",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of every domain event; the tag is the class name."""

    schema_version: ClassVar[int] = 1


def event_name(event_type: type[msgspec.Struct]) -> str:
    """The name an event type is stored and published under (its `type` tag)."""
    tag = event_type.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{event_type.__name__} has no string tag")
    return tag


# --- orders -----------------------------------------------------------------


class PlacedLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a placed order, with its total computed by the domain."""

    sku: CanonicalSku
    quantity: Quantity
    unit_price: MinorUnits
    line_total: Total


class OrderPlaced(Event, frozen=True):
    """A customer placed an order; `total` is the sum of the computed line totals."""

    order_id: UUID
    customer_id: RecordedCustomerId
    lines: tuple[PlacedLine, ...]
    currency: RecordedCurrencyCode
    total: Total


class OrderConfirmed(Event, frozen=True):
    """Stock was reserved and payment authorised: the order will be fulfilled."""

    order_id: UUID


class OrderRejected(Event, frozen=True):
    """The order cannot be fulfilled (no stock, payment declined, ...)."""

    order_id: UUID
    reason: RecordedReason


class OrderCancelled(Event, frozen=True):
    """The customer cancelled the order."""

    order_id: UUID
    cancelled_by: RecordedCustomerId
    reason: RecordedReason | None = None


type OrderEvent = OrderPlaced | OrderConfirmed | OrderRejected | OrderCancelled


# --- stock ------------------------------------------------------------------


class ProductRegistered(Event, frozen=True):
    """A SKU became known, for sale at `unit_price` in `currency`; it starts with no stock.

    `unit_price` and `currency` are null only for a product registered before
    products had prices (a version 1 event): it is not for sale until
    `ProductPriceChanged` prices it.
    """

    schema_version: ClassVar[int] = 2

    sku: CanonicalSku
    name: RecordedProductName
    unit_price: Price | None
    currency: RecordedCurrencyCode | None


class ProductPriceChanged(Event, frozen=True):
    """Staff set the product's price: orders placed from now on pay `unit_price` in `currency`."""

    sku: CanonicalSku
    unit_price: Price
    currency: RecordedCurrencyCode


class ProductDeactivated(Event, frozen=True):
    """The product is no longer for sale; orders placed before keep their lines."""

    sku: CanonicalSku
    reason: RecordedReason | None = None


class ProductActivated(Event, frozen=True):
    """A deactivated product is for sale again."""

    sku: CanonicalSku


class StockReceived(Event, frozen=True):
    """Units arrived in the warehouse; `on_hand` is the physical count afterwards."""

    sku: CanonicalSku
    quantity: Quantity
    on_hand: StockLevel


class StockReserved(Event, frozen=True):
    """Units were set aside for an order; `available` is what is left to reserve."""

    sku: CanonicalSku
    order_id: UUID
    quantity: Quantity
    available: StockLevel


class StockReservationFailed(Event, frozen=True):
    """An order asked for more units than were available; nothing was set aside."""

    sku: CanonicalSku
    order_id: UUID
    requested: Quantity
    available: StockLevel


class StockReservationReleased(Event, frozen=True):
    """An order's reserved units went back to the available stock."""

    sku: CanonicalSku
    order_id: UUID
    quantity: Quantity
    available: StockLevel


class StockReservationCommitted(Event, frozen=True):
    """An order's reserved units left the warehouse; `on_hand` is the physical count afterwards."""

    sku: CanonicalSku
    order_id: UUID
    quantity: Quantity
    on_hand: StockLevel


type StockEvent = (
    ProductRegistered
    | ProductPriceChanged
    | ProductDeactivated
    | ProductActivated
    | StockReceived
    | StockReserved
    | StockReservationFailed
    | StockReservationReleased
    | StockReservationCommitted
)


# --- payments ---------------------------------------------------------------


class PaymentRequested(Event, frozen=True):
    """Payment of `amount` was requested from the provider for an order."""

    order_id: UUID
    amount: Amount
    currency: RecordedCurrencyCode


class PaymentAuthorized(Event, frozen=True):
    """The provider authorised the payment; in this suite authorisation takes the money."""

    order_id: UUID
    provider_reference: RecordedProviderReference


class PaymentDeclined(Event, frozen=True):
    """The provider declined the payment."""

    order_id: UUID
    reason: RecordedReason


class PaymentVoided(Event, frozen=True):
    """A requested payment was called off before the provider answered."""

    order_id: UUID
    reason: RecordedReason | None = None


class PaymentRefunded(Event, frozen=True):
    """An authorised payment was paid back in full."""

    order_id: UUID
    amount: Amount
    currency: RecordedCurrencyCode
    provider_reference: RecordedProviderReference


type PaymentEvent = PaymentRequested | PaymentAuthorized | PaymentDeclined | PaymentVoided | PaymentRefunded


ALL_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced,
    OrderConfirmed,
    OrderRejected,
    OrderCancelled,
    ProductRegistered,
    ProductPriceChanged,
    ProductDeactivated,
    ProductActivated,
    StockReceived,
    StockReserved,
    StockReservationFailed,
    StockReservationReleased,
    StockReservationCommitted,
    PaymentRequested,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentVoided,
    PaymentRefunded,
)
