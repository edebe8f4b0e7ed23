"""Helpers for tests of the command service and of services that call it (headers, bodies, reading events).

Tokens, processes and app lifespans come from `testkit.harness`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
import httpx
import msgspec
from eventstore import PostgresEventStore, execute, migrate
from eventstore.store import EventStore
from eventstore.types import RecordedEvent
from fulfilment.deciders import STOCK
from fulfilment.registry import build_registry
from fulfilment.stock import RegisterProduct
from fulfilment.values import stock_stream

__all__ = [
    "CATALOGUE",
    "ORDER_BODY",
    "StoreReader",
    "command_headers",
    "register_products",
    "stock_catalogue",
]

# Products for sale in tests: orders take their prices from here (ORDER_BODY totals 2500 EUR).
CATALOGUE: tuple[dict[str, Any], ...] = (
    {"sku": "SKU-1", "name": "Blue mug", "unit_price": 1250, "currency": "EUR"},
    {"sku": "SKU-2", "name": "Green teapot", "unit_price": 3990, "currency": "EUR"},
)

ORDER_BODY: dict[str, Any] = {"lines": [{"sku": "SKU-1", "quantity": 2}], "currency": "EUR"}


async def stock_catalogue(database_url: str, products: Iterable[dict[str, Any]] = CATALOGUE) -> None:
    """Register `products` straight into the event store at `database_url` (migrating it first).

    For tests that start a command service of their own on a fresh database.
    """
    await migrate(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    store = PostgresEventStore(pool, build_registry())
    try:
        for product in products:
            command = msgspec.convert(product, RegisterProduct)
            await execute(store, STOCK, stock_stream(command.sku), command)
    finally:
        await store.close()
        await pool.close()


async def register_products(
    client: httpx.AsyncClient, staff_token: str, products: Iterable[dict[str, Any]] = CATALOGUE
) -> None:
    """Register `products` (bodies of `POST /products`) through the API; one already there is fine."""
    for product in products:
        response = await client.post("/products", json=product, headers=command_headers(staff_token))
        already = response.status_code == 409 and response.json().get("code") == "product-already-registered"
        if response.status_code != 201 and not already:
            raise AssertionError(f"registering {product['sku']}: {response.status_code} {response.text}")


def command_headers(token: str, key: str | None = None, **extra: str) -> dict[str, str]:
    """Authorization and an Idempotency-Key (a fresh one unless given), plus `extra` headers."""
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key or str(uuid.uuid4()), **extra}


class StoreReader:
    """Reads what the service wrote."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def events(self, stream_id: str) -> list[RecordedEvent]:
        events: list[RecordedEvent] = await self.store.read_stream(stream_id)
        return events

    async def event_types(self, stream_id: str) -> list[str]:
        return [event.event_type for event in await self.events(stream_id)]
