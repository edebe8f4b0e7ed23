"""The current state of the streams a command names without appending to them.

A reservation names its order, a confirmation its payment and stock items, an
order its products: the rules between them (`fulfilment.rules`, and the
catalogue prices of `fulfilment.orders`) are checked against these states, read
just before the command runs. The service reads them through its state cache
(`eventstore.StateCache`), so a read costs one round trip for the events since
the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from eventstore import EventStore, StateCache, load, load_many
from fulfilment.deciders import ORDERS, PAYMENTS, STOCK
from fulfilment.orders import Order
from fulfilment.payments import Payment
from fulfilment.stock import StockItem
from fulfilment.values import normalise_sku, order_stream, payment_stream, stock_stream

__all__ = ["Related"]


@dataclass(frozen=True, slots=True)
class Related:
    """Reads the orders, payments and stock items that commands name."""

    store: EventStore
    cache: StateCache | None = None

    async def order(self, order_id: UUID) -> Order | None:
        """The order `order_id` as it is now (None: never placed)."""
        return (await load(self.store, ORDERS, order_stream(order_id), cache=self.cache)).state

    async def payment(self, order_id: UUID) -> Payment | None:
        """The payment of order `order_id` as it is now (None: never requested)."""
        return (await load(self.store, PAYMENTS, payment_stream(order_id), cache=self.cache)).state

    async def stock_items(self, skus: Iterable[str]) -> dict[str, StockItem]:
        """The stock item of each registered SKU among `skus`, by canonical SKU (unregistered ones absent)."""
        streams = {stock_stream(sku): normalise_sku(sku) for sku in skus}
        # The items this process has seen are brought up to date in one round trip.
        loaded = await load_many(self.store, STOCK, list(streams), cache=self.cache)
        items = {streams[stream_id]: found.state for stream_id, found in loaded.items()}
        return {sku: item for sku, item in items.items() if item is not None}
