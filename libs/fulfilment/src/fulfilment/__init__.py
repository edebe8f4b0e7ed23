"""The suite's domain: orders, stock items and payments, their commands and events.

The aggregates (`fulfilment.orders`, `fulfilment.stock`, `fulfilment.payments`)
are plain decide/evolve functions with no I/O. `fulfilment.events` is the
vocabulary other services import; `fulfilment.registry` registers it with the
event store; `fulfilment.schemas` generates its JSON Schemas.
"""

from fulfilment.errors import Conflict, DomainError, InvalidCommand, NotFound, NotPermitted
from fulfilment.values import normalise_sku, order_stream, payment_stream, stock_stream

__all__ = [
    "Conflict",
    "DomainError",
    "InvalidCommand",
    "NotFound",
    "NotPermitted",
    "normalise_sku",
    "order_stream",
    "payment_stream",
    "stock_stream",
]
