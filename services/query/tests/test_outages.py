"""One store down: the reads of the other go on; the reads that need it answer 503 problems, never 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from query_service.app import create_app
from query_service.settings import QuerySettings
from testkit.harness import TcpProxy, TokenFactory, free_port

from services.query.tests.conftest import bearer, client_of
from services.query.tests.seeding import SeededModels, order


@pytest.fixture
async def placed(models: SeededModels) -> str:
    document = order("alice")
    await models.put(document)
    await models.refresh()
    await models.stock("blue-mug", "Blue mug", on_hand=3, available=3)
    return document.order_id


@pytest.fixture
async def without_search(
    settings_for: Callable[..., QuerySettings], models: SeededModels
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(search_url=f"http://127.0.0.1:{free_port()}"))
    async for http in client_of(app):
        yield http


@pytest.fixture
async def without_redis(
    settings_for: Callable[..., QuerySettings], models: SeededModels
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async for http in client_of(app):
        yield http


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert response.json()["code"] == "unavailable"


async def test_with_the_search_engine_down_redis_reads_answer_and_searches_are_503(
    without_search: httpx.AsyncClient, placed: str, tokens: TokenFactory
) -> None:
    alice, staff = bearer(tokens("alice")), bearer(tokens("s", roles=["staff"]))

    assert (await without_search.get(f"/orders/{placed}", headers=alice)).status_code == 200
    assert (await without_search.get("/stock/blue-mug", headers=alice)).status_code == 200
    assert (await without_search.get("/customers/alice/recent-orders", headers=alice)).status_code == 200
    assert (await without_search.get("/orders/counts", headers=staff)).status_code == 200
    assert_unavailable(await without_search.get("/orders", headers=alice))
    assert_unavailable(await without_search.get("/orders/counts", headers=alice))
    ready = await without_search.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "ok"
    assert ready.json()["checks"]["search"] != "ok"


async def test_a_service_started_before_the_search_engine_searches_once_the_engine_answers(
    settings_for: Callable[..., QuerySettings], engine_url: str, placed: str, tokens: TokenFactory
) -> None:
    target = urlsplit(engine_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 9200)  # the engine, not there yet
    app = create_app(settings_for(search_url=f"http://127.0.0.1:{proxy.port}"))
    alice = bearer(tokens("alice"))
    try:
        async for http in client_of(app):
            assert_unavailable(await http.get("/orders", headers=alice))
            assert (await http.get("/health/ready")).status_code == 503

            await proxy.start()
            search = await http.get("/orders", headers=alice)
            assert search.status_code == 200, search.text
            assert [found["order_id"] for found in search.json()["orders"]] == [placed]
            assert (await http.get("/health/ready")).status_code == 200
    finally:
        await proxy.stop()


async def test_with_redis_down_searches_answer_and_redis_reads_are_503(
    without_redis: httpx.AsyncClient, placed: str, tokens: TokenFactory
) -> None:
    alice = bearer(tokens("alice"))

    search = await without_redis.get("/orders", headers=alice)
    assert search.status_code == 200, search.text
    assert [found["order_id"] for found in search.json()["orders"]] == [placed]
    assert (await without_redis.get("/orders/counts", headers=alice)).status_code == 200
    assert_unavailable(await without_redis.get(f"/orders/{placed}", headers=alice))
    assert_unavailable(await without_redis.get("/stock/blue-mug", headers=alice))
    # Waiting for a token needs the projector's positions, which live in Redis.
    assert_unavailable(await without_redis.get("/orders", headers={**alice, "X-Consistency-Token": "1"}))
    ready = await without_redis.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["search"] == "ok"
    assert ready.json()["checks"]["redis"] != "ok"


async def test_ready_when_both_stores_answer(client: httpx.AsyncClient) -> None:
    ready = await client.get("/health/ready")

    assert ready.status_code == 200
    assert ready.json()["checks"] == {"startup": "ok", "loops": "ok", "redis": "ok", "search": "ok"}


async def test_more_concurrent_reads_than_redis_connections_wait_for_one_instead_of_failing(
    settings_for: Callable[..., QuerySettings], models: SeededModels, placed: str, tokens: TokenFactory
) -> None:
    # 300 reads at once through 4 connections: each waits its turn; none is a 503 while Redis is healthy.
    app = create_app(settings_for(query_redis_connections=4, query_consistency_timeout_seconds=10.0))
    alice = bearer(tokens("alice"))
    async for http in client_of(app):
        answers = await asyncio.gather(*(http.get(f"/orders/{placed}", headers=alice) for _ in range(300)))
        assert sorted({answer.status_code for answer in answers}) == [200]
