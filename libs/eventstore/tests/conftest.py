"""Fixtures: the same tests run against the in-memory store and the PostgreSQL store.

``stores`` is a factory: ``stores(registry)`` opens a store on the test's data, and
calling it again with another registry opens a second view of the *same* data, the
way a newer deploy of a service reads what an older one wrote.

``database_url`` and ``fresh_database_url`` come from the ``testkit.pytest_plugin`` plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from eventstore import (
    EventRegistry,
    EventStore,
    LogPosition,
    MemoryEventStore,
    MemoryStorage,
    PostgresEventStore,
    RecordedEvent,
    connect,
    migrate,
)

type StoreFactory = Callable[..., Any]
type LogReader = Callable[..., Awaitable[list[RecordedEvent]]]


@pytest.fixture
def registry() -> EventRegistry:
    """The registry the test's store uses: each test module overrides it with its own events."""
    return EventRegistry()


@pytest.fixture
async def migrated_database_url(fresh_database_url: str) -> str:
    """A fresh database with the event store schema."""
    await migrate(fresh_database_url)
    return fresh_database_url


@pytest.fixture
async def pool(migrated_database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await connect(migrated_database_url, min_size=1, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
async def postgres_stores(pool: asyncpg.Pool[Any]) -> AsyncIterator[StoreFactory]:
    opened: list[PostgresEventStore] = []

    def open_store(registry: EventRegistry, **options: Any) -> PostgresEventStore:
        store = PostgresEventStore(pool, registry, **options)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture(params=["memory", "postgres"])
def stores(request: pytest.FixtureRequest) -> StoreFactory:
    """Opens stores on one shared set of data: in memory, or in a fresh PostgreSQL database."""
    if request.param == "postgres":
        factory: StoreFactory = request.getfixturevalue("postgres_stores")
        return factory
    storage = MemoryStorage()

    def open_store(registry: EventRegistry, **options: Any) -> MemoryEventStore:
        return MemoryEventStore(registry, storage=storage, **options)

    return open_store


@pytest.fixture
def store(stores: StoreFactory, registry: EventRegistry) -> EventStore:
    store: EventStore = stores(registry)
    return store


@pytest.fixture
def pg_store(postgres_stores: StoreFactory, registry: EventRegistry) -> PostgresEventStore:
    """The PostgreSQL store alone, for behaviour the in-memory store does not have."""
    store: PostgresEventStore = postgres_stores(registry)
    return store


@pytest.fixture
def read_log() -> LogReader:
    """``read_all`` once at least ``count`` events are visible.

    The log horizon is the oldest transaction still running anywhere in the cluster
    (other tests' CREATE DATABASE, other services), so an event appended a moment ago
    may be handed out a few milliseconds later: by design latency, never loss.
    """

    async def read(
        store: EventStore, count: int, after: LogPosition = LogPosition.START, **options: Any
    ) -> list[RecordedEvent]:
        async with asyncio.timeout(10):
            while True:
                events = await store.read_all(after, **options)
                if len(events) >= count:
                    return events
                await asyncio.sleep(0.005)

    return read
