from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from eventstore.postgres import PostgresEventStore
from fulfilment.registry import build_registry
from litestar import Litestar
from testkit.harness import TokenFactory, lifespan_of, token_factory

from services.command.tests.support import (
    CATALOGUE,
    ORDER_BODY,
    StoreReader,
    command_headers,
    stock_catalogue,
)

SECRET = "test-secret-that-is-long-enough-for-hs256"
ISSUER = "https://issuer.test"
AUDIENCE = "command-api"


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> CommandSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_secret": SECRET,
        "pool_min_size": 1,
        "pool_max_size": 8,
        "rate_limit_per_second": 1000.0,
        "rate_limit_burst": 1000,
        "max_attempts": 20,
        **overrides,
    }
    return msgspec.convert(values, CommandSettings)


@pytest.fixture
def settings_for(redis_url: str) -> Callable[..., CommandSettings]:
    """Settings for another app on a given database, with overrides."""

    def settings(database_url: str, **overrides: Any) -> CommandSettings:
        return make_settings(database_url, redis_url, **overrides)

    return settings


@pytest.fixture
async def fresh_database_url(fresh_database_url: str) -> str:
    """A database of its own for each test, with the products of `CATALOGUE` for sale."""
    await stock_catalogue(fresh_database_url)
    return fresh_database_url


@pytest.fixture
def settings(fresh_database_url: str, redis_url: str) -> CommandSettings:
    return make_settings(fresh_database_url, redis_url)


@pytest.fixture
def app(settings: CommandSettings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # The app runs on the test's own event loop, so tests can race requests with asyncio.gather.
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as http:
            yield http


@pytest.fixture
def tokens() -> TokenFactory:
    return token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
async def reader(client: httpx.AsyncClient, settings: CommandSettings) -> AsyncIterator[StoreReader]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    store = PostgresEventStore(pool, build_registry())
    try:
        yield StoreReader(store)
    finally:
        await store.close()
        await pool.close()


async def place_order(
    client: httpx.AsyncClient, tokens: TokenFactory, customer: str = "alice", body: Any = ORDER_BODY
) -> str:
    """Place an order (of `CATALOGUE` products) for `customer`; its id."""
    response = await client.post("/orders", json=body, headers=command_headers(tokens(customer)))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def pay_and_reserve(
    client: httpx.AsyncClient, tokens: TokenFactory, order_id: str, body: Any = ORDER_BODY
) -> None:
    """What the saga does before it confirms an order: stock received and reserved, payment authorised."""
    staff, saga = tokens("clerk", roles=["staff"]), tokens("saga", roles=["service"])
    prices = {product["sku"].lower(): product["unit_price"] for product in CATALOGUE}
    total = 0
    for line in body["lines"]:
        sku, quantity = line["sku"].lower(), line["quantity"]
        total += quantity * prices[sku]
        steps = [
            (f"/products/{sku}/receipts", {"quantity": quantity}, staff),
            (f"/products/{sku}/reservations", {"order_id": order_id, "quantity": quantity}, saga),
        ]
        for path, json, token in steps:
            response = await client.post(path, json=json, headers=command_headers(token))
            assert response.status_code == 200, response.text
    payment = {"order_id": order_id, "amount": total, "currency": body["currency"]}
    requested = await client.post("/payments", json=payment, headers=command_headers(saga))
    assert requested.status_code == 201, requested.text
    authorised = await client.post(
        f"/payments/{order_id}/authorization",
        json={"provider_reference": "psp-1"},
        headers=command_headers(saga),
    )
    assert authorised.status_code == 200, authorised.text
