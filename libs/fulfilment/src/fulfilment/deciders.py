"""The three aggregates as event-store `Decider`s, ready for `eventstore.execute` or the command service."""

from __future__ import annotations

from eventstore.aggregate import Decider

from fulfilment import orders, payments, stock
from fulfilment.events import OrderEvent, PaymentEvent, StockEvent

__all__ = ["ORDERS", "PAYMENTS", "STOCK"]

ORDERS: Decider[orders.Order | None, orders.OrderCommand, OrderEvent] = Decider(
    initial_state=None, decide=orders.decide, evolve=orders.evolve, authorize=orders.authorize
)
# A busy SKU's stream grows with every reservation, so its state is snapshotted.
STOCK: Decider[stock.StockItem | None, stock.StockCommand, StockEvent] = Decider(
    initial_state=None,
    decide=stock.decide,
    evolve=stock.evolve,
    snapshot_every=100,
    state_type=stock.StockItem,
)
PAYMENTS: Decider[payments.Payment | None, payments.PaymentCommand, PaymentEvent] = Decider(
    initial_state=None, decide=payments.decide, evolve=payments.evolve
)
