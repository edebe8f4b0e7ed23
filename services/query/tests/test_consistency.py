"""Read-your-writes: a request with a consistency token waits, bounded, for the read model it reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from litestar import Litestar
from query_service.app import create_app
from query_service.settings import QuerySettings
from testkit.harness import TokenFactory

from services.query.tests.conftest import bearer, client_of
from services.query.tests.seeding import SeededModels, order


@pytest.fixture
def engine_url(search_engine_url: str) -> str:
    """Every test here runs on OpenSearch and on Elasticsearch."""
    return search_engine_url


def token(position: int) -> dict[str, str]:
    return {"X-Consistency-Token": str(position)}


@pytest.fixture
def patient_app(settings_for: Callable[..., QuerySettings]) -> Litestar:
    # Long enough that a test relying on the announcement never meets the deadline instead.
    return create_app(settings_for(query_consistency_timeout_seconds=20.0))


@pytest.fixture
async def patient(patient_app: Litestar, models: SeededModels) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_of(patient_app):
        yield http


async def test_without_a_token_the_answer_is_immediate_whatever_the_position(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice")
    await models.put(placed, search=False)  # no position was ever announced

    response = await client.get(f"/orders/{placed.order_id}", headers=bearer(tokens("alice")))

    assert response.status_code == 200


async def test_a_token_the_model_has_reached_answers_at_once(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice")
    await models.put(placed, search=False)
    await models.advance("redis", 40)

    response = await client.get(f"/orders/{placed.order_id}", headers=bearer(tokens("alice"), **token(40)))

    assert response.status_code == 200


async def test_a_waiting_read_is_woken_by_the_projectors_announcement(
    patient: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice")
    await models.advance("redis", 10)

    async def project_later() -> None:
        await asyncio.sleep(0.3)
        await models.put(placed, search=False)
        await models.advance("redis", 11)

    projecting = asyncio.create_task(project_later())
    response = await patient.get(f"/orders/{placed.order_id}", headers=bearer(tokens("alice"), **token(11)))
    await projecting

    assert response.status_code == 200, response.text
    assert response.json()["order_id"] == placed.order_id


async def test_a_token_not_reached_in_time_is_a_409_not_yet_consistent_with_retry_after(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    await models.advance("redis", 5)

    response = await client.get("/orders/counts", headers=bearer(tokens("s", roles=["staff"]), **token(6)))

    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["code"] == "not-yet-consistent"
    assert (problem["awaited_position"], problem["reached_position"]) == (6, 5)


async def test_each_read_waits_for_the_model_it_reads(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice")
    await models.put(placed)
    await models.refresh()
    await models.advance("redis", 20)  # the search projection is still at nothing
    alice = bearer(tokens("alice"), **token(20))

    by_id = await client.get(f"/orders/{placed.order_id}", headers=alice)
    search = await client.get("/orders", headers=alice)

    assert by_id.status_code == 200
    assert search.status_code == 409


async def test_a_search_with_a_token_sees_writes_the_index_has_not_refreshed_yet(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory, engine_url: str
) -> None:
    async with httpx.AsyncClient(base_url=engine_url) as engine:
        settings = await engine.put(f"/{models.index}/_settings", json={"index": {"refresh_interval": "-1"}})
        assert settings.status_code == 200, settings.text
    placed = order("alice")
    await models.put(placed)  # durable, but not visible to searches until a refresh
    await models.advance("search", 7)
    alice = bearer(tokens("alice"))

    without = await client.get("/orders", headers=alice)
    with_token = await client.get("/orders", headers={**alice, **token(7)})

    assert without.json()["orders"] == []  # the lag the token exists for
    assert [found["order_id"] for found in with_token.json()["orders"]] == [placed.order_id]


async def test_after_the_read_models_are_lost_an_old_position_no_longer_counts(
    client: httpx.AsyncClient, app: Litestar, models: SeededModels, tokens: TokenFactory
) -> None:
    watch = app.state.reads.watch
    await models.advance("redis", 50)
    await eventually(lambda: watch.known("redis") == 50)
    # Redis restarted without its data: the projector starts again from nothing.
    await models.redis.delete(models.keyspace.position("redis"))
    await models.advance("redis", 3)
    await eventually(lambda: watch.known("redis") == 3)

    response = await client.get("/orders/counts", headers=bearer(tokens("s", roles=["staff"]), **token(10)))

    assert response.status_code == 409
    assert response.json()["reached_position"] == 3


async def eventually(condition: Callable[[], bool], attempts: int = 1000) -> None:
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")
