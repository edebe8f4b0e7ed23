from __future__ import annotations

from uuid import uuid4

from eventstore import MemoryEventStore, execute, load
from fulfilment.deciders import STOCK
from fulfilment.registry import build_registry
from fulfilment.stock import ReceiveStock, RegisterProduct, ReserveStock, StockItem
from fulfilment.values import stock_stream


async def test_a_busy_stock_item_is_snapshotted_and_loads_the_same_from_its_snapshot() -> None:
    store = MemoryEventStore(build_registry())
    stream = stock_stream("SKU-9")
    await execute(
        store, STOCK, stream, RegisterProduct(sku="SKU-9", name="Widget", unit_price=500, currency="EUR")
    )
    await execute(store, STOCK, stream, ReceiveStock(sku="SKU-9", quantity=1000))
    for _ in range(150):
        await execute(store, STOCK, stream, ReserveStock(sku="sku-9", order_id=uuid4(), quantity=2))

    snapshot = await store.load_snapshot(stream, StockItem)
    loaded = await load(store, STOCK, stream)
    state, version = loaded.state, loaded.version

    assert snapshot is not None
    assert snapshot[0] == 99  # the state after the 100th event
    assert version == 151
    assert state is not None
    assert (state.on_hand, state.reserved, state.available) == (1000, 300, 700)
    assert len(state.reservations) == 150
