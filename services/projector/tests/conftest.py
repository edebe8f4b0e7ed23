"""Fixtures for the projector: a fresh event store, and Redis keys and indexes no other test shares."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from eventstore import (
    AppendResult,
    EventRegistry,
    LogPosition,
    NewEvent,
    PostgresEventStore,
    connect,
    migrate,
)
from fulfilment import superseded
from fulfilment.events import (
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PlacedLine,
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockReceived,
    StockReserved,
)
from fulfilment.registry import build_registry
from projector_service.bootstrap import Projector
from projector_service.events import ProjectedEvent, from_recorded
from projector_service.settings import ProjectorSettings
from readmodels.search import connect_search
from redis.asyncio import Redis


@pytest.fixture
async def store_url(fresh_database_url: str) -> str:
    await migrate(fresh_database_url)
    return fresh_database_url


@pytest.fixture
def settings(
    store_url: str, redis_url: str, kafka_bootstrap_servers: str, search_url: str
) -> ProjectorSettings:
    tag = uuid.uuid4().hex[:10]
    return ProjectorSettings(
        database_url=store_url,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        search_url=search_url,
        projector_topic_prefix=f"t{tag}.",
        projector_group_prefix=f"t{tag}.projector.",
        projector_dead_letter_topic=f"t{tag}.projector.dlq",
        projector_key_prefix=f"p{tag}-",
        projector_max_backoff=0.5,
        projector_partitions=3,
    )


@pytest.fixture
async def projector(settings: ProjectorSettings) -> AsyncIterator[Projector]:
    projector = await Projector.open(settings, build_registry())
    for projection in projector.projections.values():
        await projection.prepare()
    yield projector
    await cleanup(projector.redis, projector, settings.projector_key_prefix)
    await projector.close()


async def cleanup(redis: Redis, projector: Projector, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.unlink(*keys)
    for index in await projector.search.indices(f"{prefix}*"):
        await projector.search.delete_index(index)


@pytest.fixture
async def store(projector: Projector) -> PostgresEventStore:
    return projector.store


def line(sku: str, quantity: int = 1, price: int = 250) -> PlacedLine:
    return PlacedLine(sku=sku, quantity=quantity, unit_price=price, line_total=quantity * price)


def unpriced_products_registry() -> EventRegistry:
    """The registry as it was before products had prices: `ProductRegistered` at schema version 1."""
    registry = EventRegistry()
    registry.register(superseded.ProductRegistered, name="ProductRegistered", version=1)
    return registry


async def append_unpriced_registration(store: PostgresEventStore, sku: str, name: str) -> AppendResult:
    """Register `sku` as a store written before prices existed holds it: a version 1 payload."""
    old = PostgresEventStore(store.pool, unpriced_products_registry())
    try:
        return await old.append(f"stock-{sku}", [superseded.ProductRegistered(sku=sku, name=name)])
    finally:
        await old.close()


async def write_scenario(store: PostgresEventStore, *, orders: int = 12, tag: str = "") -> list[uuid.UUID]:
    """Products with prices and stock, and orders in every status; returns the order ids.

    The catalogue takes every path the stock model shows: the mug is deactivated and
    activated again, the teapot ends deactivated, and the kettle was registered before
    products had prices (a stored version 1 payload, upcast on reading) and priced later.
    """
    skus = [f"mug{tag}", f"teapot{tag}", f"kettle{tag}"]
    for number, sku in enumerate(skus):
        name = f"Blue {sku} number {number}"
        catalogue: list[Event]
        if number == 2:
            await append_unpriced_registration(store, sku, name)
            catalogue = [ProductPriceChanged(sku=sku, unit_price=4000, currency="EUR")]
        else:
            catalogue = [ProductRegistered(sku=sku, name=name, unit_price=250 * (number + 1), currency="EUR")]
        if number == 0:
            catalogue += [ProductDeactivated(sku=sku, reason="recall"), ProductActivated(sku=sku)]
        await store.append(
            f"stock-{sku}",
            [NewEvent(data=e) for e in [*catalogue, StockReceived(sku=sku, quantity=100, on_hand=100)]],
        )
        if number == 1:
            await store.append(f"stock-{sku}", [NewEvent(data=ProductDeactivated(sku=sku))])
    ids = []
    for n in range(orders):
        order_id = uuid.uuid4()
        ids.append(order_id)
        sku = skus[n % 3]
        events: list[Event] = [
            OrderPlaced(
                order_id=order_id,
                customer_id=f"customer-{n % 4}",
                lines=(line(sku, 1 + n % 3),),
                currency="EUR",
                total=250 * (1 + n % 3),
            )
        ]
        if n % 4 in (1, 2):
            events.append(OrderConfirmed(order_id=order_id))
        if n % 4 == 2:
            events.append(OrderCancelled(order_id=order_id, cancelled_by=f"customer-{n % 4}"))
        await store.append(f"order-{order_id}", [NewEvent(data=e) for e in events])
        if n % 2 == 0:
            await store.append(
                f"stock-{sku}",
                [NewEvent(data=StockReserved(sku=sku, order_id=order_id, quantity=1, available=0))],
            )
    return ids


async def log_events(store: PostgresEventStore) -> list[ProjectedEvent]:
    """The whole log, in order, as the projections see it."""
    return [from_recorded(e) for e in await store.read_all(LogPosition.START, limit=100_000)]


@pytest.fixture
async def pool(projector: Projector) -> asyncpg.Pool[Any]:
    return projector.pool


_ = connect, connect_search
