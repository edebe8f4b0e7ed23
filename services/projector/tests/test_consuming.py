"""Store -> relay -> Kafka -> projector -> read models, in-process, against the real servers."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest
from eventstore import PostgresEventStore
from fulfilment.registry import build_registry
from projector_service.bootstrap import Projector
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import wait_for_position
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings

from services.projector.tests.conftest import log_events, write_scenario
from services.projector.tests.snapshots import redis_snapshot, search_snapshot


@pytest.fixture
async def relay(settings: ProjectorSettings, projector: Projector) -> AsyncIterator[Relay]:
    relay_settings = RelaySettings(
        database_url=settings.database_url,
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        relay_topic_prefix=settings.projector_topic_prefix,
        relay_partitions=settings.projector_partitions,
        relay_lock_key=random.randrange(1, 2**62),
        relay_standby_poll=0.2,
        relay_max_backoff=1.0,
    )
    relay = Relay(relay_settings, projector.store)
    task = asyncio.create_task(relay.run())
    yield relay
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(service: ProjectorService) -> AsyncIterator[ProjectorService]:
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def reached(projector: Projector, position: int, timeout: float = 60) -> None:
    for name in projector.names:
        assert await wait_for_position(
            projector.redis, projector.keyspace, name, position, timeout=timeout
        ), name


async def clean_models(projector: Projector, store: PostgresEventStore) -> tuple[object, object]:
    """The models a clean pass over the store's log builds, in a generation of their own."""
    events = await log_events(store)
    for projection in projector.projections.values():
        await projection.create("clean")
        assert await projection.apply(events, ["clean"]) == {}
    return await models(projector, "clean")


async def models(projector: Projector, generation: str) -> tuple[object, object]:
    index = projector.projections["search"].index(generation)  # type: ignore[attr-defined]
    return (
        await redis_snapshot(projector.redis, projector.keyspace, generation),
        await search_snapshot(projector.search, index),
    )


async def live_models(projector: Projector) -> tuple[object, object]:
    """The models readers see now: the live Redis generation and the index behind the alias."""
    generation = (await projector.keyspace.live_models(projector.redis)).generation
    (index,) = await projector.search.alias_targets(projector.projections["search"].alias)  # type: ignore[attr-defined]
    return (
        await redis_snapshot(projector.redis, projector.keyspace, generation),
        await search_snapshot(projector.search, index),
    )


async def test_events_appended_to_the_store_reach_both_models_through_kafka(
    projector: Projector, store: PostgresEventStore, relay: Relay
) -> None:
    async with running(ProjectorService(projector)) as service:
        await write_scenario(store, orders=20)
        events = await log_events(store)
        await reached(projector, events[-1].position)
        assert all(status.applied_total > 0 for status in service.statuses.values())
        # The catalogue's events, a stored version 1 registration among them: none is dead-lettered.
        stored = await store.read_all_stored(categories=["stock"])
        assert {(e.event_type, e.schema_version) for e in stored} >= {
            ("ProductRegistered", 1), ("ProductRegistered", 2), ("ProductPriceChanged", 1),
            ("ProductDeactivated", 1), ("ProductActivated", 1),
        }  # fmt: skip
        assert {name: status.dead_letters for name, status in service.statuses.items()} == {
            "redis": 0,
            "search": 0,
        }
        report = await service.report()
        assert report["projections"]["redis"]["lag_events"] == 0
    assert await live_models(projector) == await clean_models(projector, store)


async def test_two_instances_share_the_partitions_and_together_apply_everything(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay
) -> None:
    second = await Projector.open(settings, build_registry())
    try:
        async with running(ProjectorService(projector)) as one, running(ProjectorService(second)) as two:
            await write_scenario(store, orders=60)
            last = (await log_events(store))[-1].position
            await reached(projector, last)
            for name in projector.names:
                assert one.statuses[name].applied_total > 0, f"instance one applied nothing to {name}"
                assert two.statuses[name].applied_total > 0, f"instance two applied nothing to {name}"
    finally:
        await second.close()
    assert await live_models(projector) == await clean_models(projector, store)
