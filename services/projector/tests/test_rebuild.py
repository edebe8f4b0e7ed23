"""Rebuilding from the store while events keep coming and readers keep reading."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import OrderConfirmed, OrderPlaced
from projector_service.bootstrap import Projector
from projector_service.rebuild import RebuildProgress, rebuild
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import Keyspace
from relay_service.publisher import Relay

from services.projector.tests.conftest import line, log_events, write_scenario
from services.projector.tests.test_consuming import clean_models, live_models, reached, relay, running

_ = relay


@pytest.fixture
def settings(settings: ProjectorSettings, search_engine_url: str) -> ProjectorSettings:
    """These tests run on each search engine the read models promise to work on."""
    return msgspec.structs.replace(settings, search_url=search_engine_url)


async def read_models_once(projector: Projector) -> tuple[int, int]:
    """What a query service does: resolve the live generation / alias once, then read."""
    keyspace: Keyspace = projector.keyspace
    keys = await keyspace.live_models(projector.redis)
    counts = await projector.redis.hgetall(keys.order_counts)
    search = projector.projections["search"]
    hits = await projector.search.search(search.alias, {"match_all": {}}, size=10_000)  # type: ignore[attr-defined]
    return sum(int(v) for v in counts.values()), len(hits)


async def test_a_rebuild_during_writes_and_reads_fails_no_read_and_ends_equal_to_a_clean_build(
    projector: Projector, store: PostgresEventStore, relay: Relay
) -> None:
    await write_scenario(store, orders=150)
    stop = asyncio.Event()
    written = 0

    async def write() -> None:
        nonlocal written
        while not stop.is_set():
            order_id = uuid.uuid4()
            placed = OrderPlaced(
                order_id=order_id, customer_id="late", lines=(line("mug"),), currency="EUR", total=250
            )
            await store.append(f"order-{order_id}", [NewEvent(data=placed)])
            await store.append(f"order-{order_id}", [NewEvent(data=OrderConfirmed(order_id=order_id))])
            written += 1
            await asyncio.sleep(0.01)

    seen: list[tuple[int, int]] = []

    async def read() -> None:
        while not stop.is_set():
            seen.append(await read_models_once(projector))  # any failure fails the test
            await asyncio.sleep(0.005)

    progress: list[RebuildProgress] = []
    async with running(ProjectorService(projector)):
        await reached(projector, (await log_events(store))[-1].position)
        _, documents_before = await read_models_once(projector)
        writer, reader = asyncio.create_task(write()), asyncio.create_task(read())
        try:
            results = await asyncio.gather(
                *(rebuild(projector, name, page_size=50, grace=0.5, on_progress=progress.append)
                  for name in projector.names)
            )  # fmt: skip
        finally:
            stop.set()
            await asyncio.gather(writer, reader)
        await reached(projector, (await log_events(store))[-1].position)
        live_generation = (await projector.keyspace.live_models(projector.redis)).generation

    assert written > 0
    assert all(result.phase == "done" and result.failed == 0 for result in results)
    assert any(p.phase == "reading" and 0 < p.read < p.total for p in progress)
    # Orders are only ever added: a reader that saw fewer than before saw a half-built model.
    # Redis is read-your-writes; search is near real time (each index refreshes on its own),
    # so its count may lag by the last second's orders, never below what was there before.
    for (orders_before, _), (orders_after, _) in itertools.pairwise(seen):
        assert orders_after >= orders_before, (seen, results)
    assert min(documents for _, documents in seen) >= documents_before
    assert live_generation != "g0"
    assert await projector.search.indices(f"{projector.keyspace.prefix}orders-v1-g0") == []
    assert [
        key async for key in projector.redis.scan_iter(match=projector.keyspace.models("g0").pattern)
    ] == []
    assert await live_models(projector) == await clean_models(projector, store)


# Each distinct transaction id of the log gets 90 + its rank: the ids of a young cluster,
# crossing from two digits to three. Order and grouping stay as they were, and all stay
# below the horizon, so the log reads the same, only its numbers change.
RENUMBER_TRANSACTIONS = """
UPDATE eventstore.events e
   SET transaction_id = (90 + r.rank)::text::xid8
  FROM (SELECT DISTINCT transaction_id, dense_rank() OVER (ORDER BY transaction_id) AS rank
          FROM eventstore.events) r
 WHERE e.transaction_id = r.transaction_id
"""


async def test_a_rebuild_reads_to_the_end_of_a_log_whose_transaction_ids_cross_a_power_of_ten(
    projector: Projector, store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    # A freshly initialised cluster hands out ids like 998, 999, 1000 within minutes: the
    # head of the log must be the last event by number, not by its digits ('99' > '110').
    await write_scenario(store, orders=12)
    await pool.execute(RENUMBER_TRANSACTIONS)
    ids = [event.transaction_id for event in await store.read_all(limit=1000)]
    assert min(ids) < 100 <= max(ids)

    results = [await rebuild(projector, name, page_size=5, grace=0) for name in projector.names]

    assert all(result.read == result.total and result.total > 0 for result in results), results
    assert await live_models(projector) == await clean_models(projector, store)
