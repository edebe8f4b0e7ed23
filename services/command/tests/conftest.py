from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from command_service.testing import StoreReader, register_products
from eventstore.postgres import PostgresEventStore
from fulfilment.registry import build_registry
from litestar import Litestar
from servicekit.testing import TokenFactory, lifespan_of, token_factory

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
def settings(fresh_database_url: str, redis_url: str) -> CommandSettings:
    return make_settings(fresh_database_url, redis_url)


@pytest.fixture
def app(settings: CommandSettings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar, tokens: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, whose catalogue holds `command_service.testing.CATALOGUE`."""
    # The app runs on the test's own event loop, so tests can race requests with asyncio.gather.
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as http:
            await register_products(http, tokens("catalogue-admin", roles=["staff"]))
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
