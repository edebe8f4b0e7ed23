"""The current state of the streams a command names without appending to them.

A reservation names its order, a confirmation its payment and stock items, an
order its products: the rules between them (`fulfilment.rules`, and the
catalogue prices of `fulfilment.orders`) are checked against these states, read
just before the command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from uuid import UUID

from eventstore import EventStore, load
from fulfilment.deciders import ORDERS, PAYMENTS, STOCK
from fulfilment.orders import Order
from fulfilment.payments import Payment
from fulfilment.stock import StockItem
from fulfilment.values import normalise_sku, order_stream, payment_stream, stock_stream

__all__ = ["order_of", "payment_of", "stock_items"]


async def order_of(store: EventStore, order_id: UUID) -> Order | None:
    """The order `order_id` as it is now (None: never placed)."""
    return (await load(store, ORDERS, order_stream(order_id))).state


async def payment_of(store: EventStore, order_id: UUID) -> Payment | None:
    """The payment of order `order_id` as it is now (None: never requested)."""
    return (await load(store, PAYMENTS, payment_stream(order_id))).state


async def stock_items(store: EventStore, skus: Iterable[str]) -> dict[str, StockItem]:
    """The stock item of each registered SKU among `skus`, by canonical SKU (unregistered ones absent)."""
    canonical = sorted({normalise_sku(sku) for sku in skus})
    loaded = await asyncio.gather(*(load(store, STOCK, stock_stream(sku)) for sku in canonical))
    return {sku: found.state for sku, found in zip(canonical, loaded, strict=True) if found.state is not None}
