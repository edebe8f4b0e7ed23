"""Fixtures for the query service: seeded read models under a prefix of their own, the app in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from query_service.app import create_app
from query_service.settings import QuerySettings
from readmodels.keyspace import Keyspace
from readmodels.search import connect_search
from redis.asyncio import Redis
from testkit.harness import TokenFactory, lifespan_of, token_factory

from services.query.tests.seeding import SeededModels

SECRET = "query-secret-that-is-long-enough-for-hs256"
ISSUER = "https://issuer.test"
AUDIENCE = "query-api"


@pytest.fixture
def prefix() -> str:
    return f"q{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def engine_url(search_url: str) -> str:
    """The search engine of a test: the default one; modules about searching take both (`both_engines`)."""
    return search_url


@pytest.fixture
async def models(redis_url: str, engine_url: str, prefix: str) -> AsyncIterator[SeededModels]:
    redis = Redis.from_url(redis_url)
    search = await connect_search(engine_url)
    seeded = SeededModels(redis, search, Keyspace(prefix))
    await seeded.create()
    try:
        yield seeded
    finally:
        await seeded.drop()
        await search.close()
        await redis.aclose()


def make_settings(redis_url: str, search_url: str, prefix: str, **overrides: Any) -> QuerySettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "search_url": search_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_secret": SECRET,
        "query_key_prefix": prefix,
        "rate_limit_per_second": 1000.0,
        "rate_limit_burst": 1000,
        **overrides,
    }
    return msgspec.convert(values, QuerySettings)


@pytest.fixture
def settings_for(redis_url: str, engine_url: str, prefix: str) -> Callable[..., QuerySettings]:
    """Settings for this test's prefix; overrides (a dead `search_url`, say) win."""

    def settings(**overrides: Any) -> QuerySettings:
        values = {"redis_url": redis_url, "search_url": engine_url, **overrides}
        return make_settings(values.pop("redis_url"), values.pop("search_url"), prefix, **values)

    return settings


@pytest.fixture
def settings(settings_for: Callable[..., QuerySettings]) -> QuerySettings:
    return settings_for(query_consistency_timeout_seconds=1.0)


@pytest.fixture
def app(settings: QuerySettings) -> Litestar:
    return create_app(settings)


async def client_of(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query.test") as http:
            yield http


@pytest.fixture
async def client(app: Litestar, models: SeededModels) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_of(app):
        yield http


@pytest.fixture
def tokens() -> TokenFactory:
    return token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}
