"""Lost read models repair themselves; readers get 503 `read-model-rebuilding` meanwhile, never a wrong one.

Against the real servers, with the projector running in-process and the query
service in-process over HTTP on the same key prefix. "Redis restarted empty" is
every key of the test's prefix deleted (the shared server holds other tests'
keys, so no FLUSHDB); "the index deleted" is the index behind the alias deleted.
The repair is held back by the rebuild's own lock, taken in the test's name
(as a rebuild from the command line would hold it), so the answers given until
the model is whole again are seen for certain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import msgspec
import pytest
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import OrderConfirmed, OrderPlaced
from projector_service.bootstrap import Projector
from projector_service.rebuild import RebuildProgress, RebuildRunning, rebuild
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from query_service.app import create_app
from readmodels.keyspace import Keyspace, read_position
from redis.asyncio import Redis
from relay_service.publisher import Relay
from testkit.harness import TokenFactory, token_factory

from services.projector.tests.conftest import line, log_events, write_scenario
from services.projector.tests.test_consuming import clean_models, live_models, reached, relay, running
from services.query.tests.conftest import AUDIENCE, ISSUER, SECRET, bearer, client_of, make_settings

_ = relay

REBUILDING = "urn:fulfilment:problem:read-model-rebuilding"


@pytest.fixture
def settings(settings: ProjectorSettings, search_engine_url: str) -> ProjectorSettings:
    """These tests run on each search engine the read models promise to work on."""
    return msgspec.structs.replace(settings, search_url=search_engine_url)


@pytest.fixture
async def query(settings: ProjectorSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The query service over the projector's read models (same Redis, engine and prefix)."""
    app = create_app(
        make_settings(
            settings.redis_url,
            settings.search_url,
            settings.projector_key_prefix,
            query_consistency_timeout_seconds=1.0,
        )
    )
    async for http in client_of(app):
        yield http


@pytest.fixture
def staff() -> dict[str, str]:
    tokens: TokenFactory = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    return bearer(tokens("staff-1", roles=["staff"]))


async def lose_redis_data(redis: Redis, keyspace: Keyspace, *, hold: Sequence[str]) -> None:
    """What a Redis restarted without persistence shows this prefix: nothing, but for rebuild locks
    taken in the test's name for the projections in `hold` (in the same transaction, so no repair
    starts before they are held)."""
    keys = [key async for key in redis.scan_iter(match=f"{keyspace.prefix}*", count=1000)]
    assert keys
    pipe = redis.pipeline(transaction=True)
    pipe.unlink(*keys)
    for name in hold:
        pipe.set(keyspace.rebuild_lock(name), "held-by-the-test")
    await pipe.execute()


async def release(redis: Redis, keyspace: Keyspace, names: Sequence[str]) -> None:
    await redis.delete(*(keyspace.rebuild_lock(name) for name in names))


async def eventually[T](probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 60) -> T:
    """`probe()` once `done` says so, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def answers(
    query: httpx.AsyncClient, staff: dict[str, str], order_ids: list[uuid.UUID]
) -> dict[str, Any]:
    """Everything the query service says about the orders, the counts and the stock."""
    found: dict[str, Any] = {}
    for order_id in order_ids:
        response = await query.get(f"/orders/{order_id}", headers=staff)
        found[f"order {order_id}"] = (response.status_code, response.json())
    for path in ("/orders/counts", "/customers/customer-1/recent-orders", "/stock/mug", "/stock/kettle"):
        response = await query.get(path, headers=staff)
        found[path] = (response.status_code, response.json())
    return found


async def searched(query: httpx.AsyncClient, staff: dict[str, str], **headers: str) -> httpx.Response:
    return await query.get("/orders/", params={"limit": 100}, headers={**staff, **headers})


def assert_rebuilding(response: httpx.Response, model: str) -> None:
    assert response.status_code == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) > 0
    problem = response.json()
    assert (problem["type"], problem["read_model"]) == (REBUILDING, model), problem
    assert response.headers["content-type"].startswith("application/problem+json")


async def write_orders(store: PostgresEventStore, count: int) -> None:
    for _ in range(count):
        order_id = uuid.uuid4()
        placed = OrderPlaced(
            order_id=order_id, customer_id="late", lines=(line("mug"),), currency="EUR", total=250
        )
        await store.append(
            f"order-{order_id}", [NewEvent(data=placed), NewEvent(data=OrderConfirmed(order_id=order_id))]
        )


async def test_redis_restarted_empty_is_rebuilt_with_its_positions_and_readers_get_503_meanwhile(
    projector: Projector,
    store: PostgresEventStore,
    relay: Relay,
    query: httpx.AsyncClient,
    staff: dict[str, str],
    settings: ProjectorSettings,
) -> None:
    order_ids = await write_scenario(store, orders=40)
    service = ProjectorService(projector, repair_grace=0.2)
    async with running(service):
        token = (await log_events(store))[-1].position
        await reached(projector, token)
        before = await answers(query, staff, order_ids)
        search_before = (await searched(query, staff)).json()
        assert all(status == 200 for status, _ in before.values()), before
        assert sum(before["/orders/counts"][1]["counts"].values()) == 40

        await lose_redis_data(projector.redis, projector.keyspace, hold=projector.names)
        repairing = await eventually(service.repairing, lambda found: set(found) == {"redis", "search"})
        assert set(repairing) == {"redis", "search"}, repairing
        # Every Redis read: being rebuilt, never 404 or a zero count, with or without a token.
        during = await answers(query, staff, order_ids)
        for response_of in (
            await query.get(f"/orders/{order_ids[0]}", headers=staff),
            await query.get("/orders/counts", headers=staff),
            await query.get(f"/orders/{order_ids[0]}", headers={**staff, "X-Consistency-Token": str(token)}),
        ):
            assert_rebuilding(response_of, "redis")
        assert {status for status, _ in during.values()} == {503}, during
        # The index itself lost nothing, but the search position went with Redis: a search with
        # a token answers from the whole index (if the query service still knows the position
        # reached) or says it is being rebuilt; never fewer orders.
        search_during = await searched(query, staff, **{"X-Consistency-Token": str(token)})
        if search_during.status_code == 200:
            assert search_during.json() == search_before
        else:
            assert_rebuilding(search_during, "search")
        # The projector says so: /status per projection, and readiness names both models.
        report = (await service.report())["projections"]
        assert report["redis"]["repair"], report
        assert report["search"]["repair"], report
        checks = await service.checks()
        assert "redis read model is being rebuilt" in (checks["redis"] or ""), checks
        assert "search read model is being rebuilt" in (checks["search"] or ""), checks
        assert await service.models_whole() is not None
        await release(projector.redis, projector.keyspace, projector.names)

        # Writes go on while it is rebuilt.
        await write_orders(store, 5)
        repairing = await eventually(service.repairing, lambda found: not found)
        assert repairing == {}
        last = (await log_events(store))[-1].position
        await reached(projector, last)
        positions = {
            name: await read_position(projector.redis, projector.keyspace, name) for name in projector.names
        }

        after = await answers(query, staff, order_ids)
        with_token = await query.get(
            f"/orders/{order_ids[0]}", headers={**staff, "X-Consistency-Token": str(token)}
        )
        counts_with_token = await query.get(
            "/orders/counts", headers={**staff, "X-Consistency-Token": str(token)}
        )
        search_with_token = await searched(query, staff, **{"X-Consistency-Token": str(token)})
        assert await service.models_whole() is None
        assert (await service.checks())["redis"] is None
        repairs = {
            name: status["repairs"] for name, status in (await service.report())["projections"].items()
        }

    assert all(position >= last for position in positions.values()), (positions, last)
    assert with_token.status_code == 200, with_token.text
    assert with_token.json() == before[f"order {order_ids[0]}"][1]
    assert search_with_token.status_code == 200, search_with_token.text
    # Every order reads as before; the counts and recent orders only gained the five late orders.
    assert {k: v for k, v in after.items() if k.startswith("order ")} == {
        k: v for k, v in before.items() if k.startswith("order ")
    }
    counts_before, counts_after = before["/orders/counts"][1], after["/orders/counts"][1]
    assert counts_with_token.json() == counts_after
    assert counts_after["total"] == counts_before["total"] + 5
    assert counts_after["counts"]["confirmed"] == counts_before["counts"]["confirmed"] + 5
    assert after["/customers/customer-1/recent-orders"] == before["/customers/customer-1/recent-orders"]
    assert after["/stock/mug"] == before["/stock/mug"]
    assert after["/stock/kettle"] == before["/stock/kettle"]
    found_before = {o["order_id"] for o in search_before["orders"]}
    assert found_before <= {o["order_id"] for o in search_with_token.json()["orders"]}
    assert repairs == {"redis": 1, "search": 1}
    assert await live_models(projector) == await clean_models(projector, store)


async def test_a_deleted_index_is_rebuilt_while_redis_reads_go_on(
    projector: Projector,
    store: PostgresEventStore,
    relay: Relay,
    query: httpx.AsyncClient,
    staff: dict[str, str],
) -> None:
    order_ids = await write_scenario(store, orders=30)
    service = ProjectorService(projector, repair_grace=0.2)
    alias = projector.projections["search"].alias  # type: ignore[attr-defined]
    async with running(service):
        token = (await log_events(store))[-1].position
        await reached(projector, token)
        search_before = (await searched(query, staff, **{"X-Consistency-Token": str(token)})).json()
        assert len(search_before["orders"]) == 30

        await projector.redis.set(projector.keyspace.rebuild_lock("search"), "held-by-the-test")
        for index in await projector.search.alias_targets(alias):
            await projector.search.delete_index(index)
        repairing = await eventually(service.repairing, lambda found: "search" in found)
        assert set(repairing) == {"search"}, repairing
        assert_rebuilding(await searched(query, staff), "search")
        assert_rebuilding(await searched(query, staff, **{"X-Consistency-Token": str(token)}), "search")
        customer_counts = await query.get("/orders/counts", params={"customer": "customer-1"}, headers=staff)
        assert_rebuilding(customer_counts, "search")
        # The Redis model did not lose anything: it answers on.
        assert (await query.get(f"/orders/{order_ids[0]}", headers=staff)).status_code == 200
        assert "search read model is being rebuilt" in ((await service.checks())["search"] or "")
        await release(projector.redis, projector.keyspace, ["search"])

        await write_orders(store, 3)  # consumed while the index is rebuilt
        assert await eventually(service.repairing, lambda found: not found) == {}
        last = (await log_events(store))[-1].position
        await reached(projector, last)
        search_after = await searched(query, staff, **{"X-Consistency-Token": str(last)})

    assert search_after.status_code == 200, search_after.text
    after_ids = [o["order_id"] for o in search_after.json()["orders"]]
    assert len(after_ids) == 33
    assert {o["order_id"] for o in search_before["orders"]} <= set(after_ids)
    assert await live_models(projector) == await clean_models(projector, store)


async def test_a_manual_rebuild_after_redis_lost_its_data_restores_the_positions_and_consumers_go_on(
    projector: Projector, store: PostgresEventStore, relay: Relay, settings: ProjectorSettings
) -> None:
    await write_scenario(store, orders=20)
    async with running(ProjectorService(projector)):
        await reached(projector, (await log_events(store))[-1].position)
    # Redis comes back empty while the service is down; a person rebuilds by hand (the CLI's call).
    await lose_redis_data(projector.redis, projector.keyspace, hold=[])
    last = (await log_events(store))[-1].position
    for name in projector.names:
        await rebuild(projector, name, page_size=7, grace=0)
    positions = {
        name: await read_position(projector.redis, projector.keyspace, name) for name in projector.names
    }
    assert positions == {"redis": last, "search": last}

    async with running(ProjectorService(projector)) as service:
        await write_orders(store, 2)
        await reached(projector, (await log_events(store))[-1].position)
        consuming = {name: status.consuming for name, status in service.statuses.items()}
        repairs = dict(service.repairer.repaired)
    assert consuming == {"redis": True, "search": True}
    assert repairs == {"redis": 0, "search": 0}  # the manual rebuild left nothing to repair
    assert await live_models(projector) == await clean_models(projector, store)


async def test_one_rebuild_of_a_projection_at_a_time_and_the_lock_is_released_after(
    projector: Projector, store: PostgresEventStore
) -> None:
    await write_scenario(store, orders=10)
    lock = projector.keyspace.rebuild_lock("redis")

    first, second = await asyncio.gather(
        rebuild(projector, "redis", page_size=5, grace=0),
        rebuild(projector, "redis", page_size=5, grace=0),
        return_exceptions=True,
    )

    assert isinstance(first, RebuildProgress), first
    assert first.phase == "done"
    assert isinstance(second, RebuildRunning), second
    assert "already running" in str(second)
    assert await projector.redis.exists(lock) == 0
    # A lock held by someone else (a rebuild on another machine) is not taken over.
    await projector.redis.set(lock, "g-elsewhere")
    with pytest.raises(RebuildRunning, match="g-elsewhere"):
        await rebuild(projector, "redis", grace=0)
    assert await projector.redis.get(lock) == b"g-elsewhere"
