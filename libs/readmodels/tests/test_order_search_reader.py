"""The order search reader against the real engines: pages, counts, outages, and finding the engine late.

Every test runs once on OpenSearch and once on Elasticsearch (`search_engine_url`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
import pytest
from readmodels.order_queries import InvalidCursor, OrderFilters, OrderSearchReader
from readmodels.orders import (
    ORDER_INDEX_SETTINGS,
    ORDER_MAPPINGS,
    OrderDocument,
    OrderLineDocument,
    orders_alias,
    orders_index,
)
from readmodels.rebuilding import ReadModelRebuilding
from readmodels.search import BulkWrite, SearchUnavailable, connect_search
from testkit.harness import TcpProxy, free_port


def order(number: int, status: str) -> OrderDocument:
    line = OrderLineDocument(
        sku="blue-mug", product_name="Blue mug", quantity=1, unit_price=500, line_total=500
    )
    return OrderDocument(
        order_id=f"order-{number:02}",
        customer_id="alice",
        status=status,
        lines=(line,),
        total=500,
        currency="EUR",
        placed_at=f"2026-03-01T00:00:{number:02}Z",
        updated_at=f"2026-03-01T00:00:{number:02}Z",
        version=1,
        position=number,
    )


ORDERS = [order(n, "pending" if n % 2 else "shipped") for n in range(5)]


@pytest.fixture
async def alias(search_engine_url: str) -> AsyncIterator[str]:
    """The orders alias of a prefix of this test's own, over an index holding `ORDERS`."""
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    index = orders_index(prefix, "g1")
    search = await connect_search(search_engine_url)
    try:
        await search.create_index(index, mappings=ORDER_MAPPINGS, settings=ORDER_INDEX_SETTINGS)
        writes = [BulkWrite(o.order_id, msgspec.to_builtins(o), o.version) for o in ORDERS]
        await search.put_many(index, writes, refresh=True)
        await search.point_alias(orders_alias(prefix), index)
        yield orders_alias(prefix)
    finally:
        await search.delete_index(index)
        await search.close()


@pytest.fixture
async def reader(search_engine_url: str, alias: str) -> AsyncIterator[OrderSearchReader]:
    reader = OrderSearchReader(search_engine_url, alias, timeout=2, connections=4)
    yield reader
    await reader.close()


async def test_pages_follow_their_cursors_to_the_end_and_counts_group_by_status(
    reader: OrderSearchReader,
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        page = await reader.page(OrderFilters(customer_id="alice"), "-placed_at", 2, cursor)
        seen += [found.order_id for found in page.orders]
        cursor = page.next_cursor
    assert cursor is None
    assert seen == [o.order_id for o in reversed(ORDERS)]
    assert page.orders[0] == ORDERS[0]  # the whole document, decoded
    assert await reader.counts(OrderFilters(customer_id="alice")) == {"pending": 2, "shipped": 3}
    assert await reader.counts(OrderFilters(customer_id="bob")) == {}


async def test_cursors_are_good_on_every_reader_sharing_the_key_and_refused_elsewhere(
    search_engine_url: str, alias: str
) -> None:
    one = OrderSearchReader(search_engine_url, alias, timeout=2, cursor_key=b"a" * 32)
    other = OrderSearchReader(search_engine_url, alias, timeout=2, cursor_key=b"a" * 32)
    stranger = OrderSearchReader(search_engine_url, alias, timeout=2, cursor_key=b"b" * 32)
    keyless = OrderSearchReader(search_engine_url, alias, timeout=2)
    filters = OrderFilters(customer_id="alice")
    try:
        first = await one.page(filters, "-placed_at", 2)
        assert first.next_cursor is not None
        second = await other.page(filters, "-placed_at", 2, first.next_cursor)
        assert [found.order_id for found in second.orders] == ["order-02", "order-01"]
        for reader in (stranger, keyless):
            with pytest.raises(InvalidCursor):
                await reader.page(filters, "-placed_at", 2, first.next_cursor)
    finally:
        for reader in (one, other, stranger, keyless):
            await reader.close()


async def test_a_missing_index_is_a_model_being_rebuilt_while_the_engine_is_up(
    search_engine_url: str,
) -> None:
    reader = OrderSearchReader(search_engine_url, f"missing-{uuid.uuid4().hex[:10]}", timeout=2)
    try:
        with pytest.raises(ReadModelRebuilding, match="does not exist"):
            await reader.page(OrderFilters(), "-placed_at", 5)
        with pytest.raises(ReadModelRebuilding, match="does not exist"):
            await reader.counts(OrderFilters())
        with pytest.raises(ReadModelRebuilding, match="does not exist"):
            await reader.refresh()
        await reader.ping()  # the engine answers: ready, and the reads say why they cannot
    finally:
        await reader.close()


async def test_an_unreachable_engine_is_unavailable() -> None:
    reader = OrderSearchReader(f"http://127.0.0.1:{free_port()}", "orders", timeout=2)
    try:
        with pytest.raises(SearchUnavailable, match="did not answer"):
            await reader.page(OrderFilters(), "-placed_at", 5)
        with pytest.raises(SearchUnavailable, match="did not answer"):
            await reader.ping()
    finally:
        await reader.close()


async def test_a_reader_made_while_the_engine_is_unreachable_works_once_it_is_reachable(
    search_engine_url: str, alias: str
) -> None:
    target = urlsplit(search_engine_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)  # not listening yet
    reader = OrderSearchReader(f"http://127.0.0.1:{proxy.port}", alias, timeout=2)
    try:
        # Calls made together while the engine is away all fail, and none stays stuck.
        failures = await asyncio.gather(
            *(reader.page(OrderFilters(), "-placed_at", 5) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(failure, SearchUnavailable) for failure in failures), failures
        with pytest.raises(SearchUnavailable):
            await reader.ping()

        await proxy.start()
        pages = await asyncio.gather(*(reader.page(OrderFilters(), "-placed_at", 5) for _ in range(4)))
        assert [[o.order_id for o in page.orders] for page in pages] == [
            [o.order_id for o in reversed(ORDERS)]
        ] * 4
        await reader.ping()
        await reader.refresh()

        # Found once, the engine's outages afterwards are the client's, and it recovers from them too.
        await proxy.stop()
        with pytest.raises(SearchUnavailable, match="unreachable"):
            await reader.counts(OrderFilters())
        await proxy.start()
        assert await reader.counts(OrderFilters()) == {"pending": 2, "shipped": 3}
    finally:
        await reader.close()
        await proxy.stop()


async def test_closing_a_reader_that_never_found_its_engine_is_fine() -> None:
    reader = OrderSearchReader(f"http://127.0.0.1:{free_port()}", "orders", timeout=2)
    await reader.close()
    with pytest.raises(SearchUnavailable):
        await reader.ping()
    await reader.close()
