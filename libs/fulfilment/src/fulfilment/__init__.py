"""The suite's domain: orders, stock items and payments, their commands and events.

The aggregates (`fulfilment.orders`, `fulfilment.stock`, `fulfilment.payments`)
are plain decide/evolve functions with no I/O. `fulfilment.events` is the
vocabulary other services import; `fulfilment.registry` registers it with the
event store; `fulfilment.schemas` generates its JSON Schemas.
"""

from fulfilment.errors import Conflict, DomainError, InvalidCommand, NotFound, NotPermitted
from fulfilment.values import (
    ORDER_CATEGORY,
    PAYMENT_CATEGORY,
    STOCK_CATEGORY,
    normalise_sku,
    order_id_of,
    order_stream,
    payment_order_id_of,
    payment_stream,
    sku_of,
    stock_stream,
)

__all__ = [
    "ORDER_CATEGORY",
    "PAYMENT_CATEGORY",
    "STOCK_CATEGORY",
    "Conflict",
    "DomainError",
    "InvalidCommand",
    "NotFound",
    "NotPermitted",
    "normalise_sku",
    "order_id_of",
    "order_stream",
    "payment_order_id_of",
    "payment_stream",
    "sku_of",
    "stock_stream",
]
