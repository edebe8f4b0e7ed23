"""Subscribers are woken by LISTEN/NOTIFY, not by their poll interval; polling covers lost wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import EventRegistry, PostgresEventStore, RecordedEvent
from eventstore.notifications import CHANNEL

# Long enough that an event arriving quickly can only have been pushed.
POLL_INTERVAL = 30.0
WELL_UNDER_POLL = 2.0


class Pinged(msgspec.Struct, frozen=True):
    n: int


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Pinged, name="pinged")
    return registry


class Subscriber:
    """Runs a subscription in a task, so waiting for an event never cancels the subscription."""

    def __init__(self, subscription: AsyncIterator[RecordedEvent]) -> None:
        self.subscription = subscription
        self.received: asyncio.Queue[RecordedEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async with contextlib.aclosing(self.subscription):  # type: ignore[type-var]
            async for event in self.subscription:
                await self.received.put(event)

    async def next_event(self, timeout: float) -> tuple[RecordedEvent, float]:
        started = time.perf_counter()
        async with asyncio.timeout(timeout):
            event = await self.received.get()
        return event, time.perf_counter() - started

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def idle_subscriber(store: PostgresEventStore, **options: Any) -> AsyncIterator[Subscriber]:
    """A subscriber that has caught up with one event and is now in its long wait."""
    await store.append("ping-0", [Pinged(0)])
    subscriber = Subscriber(
        store.subscribe_all(poll_interval=options.pop("poll_interval", POLL_INTERVAL), **options)
    )
    try:
        await subscriber.next_event(10)
        await asyncio.sleep(0.2)
        yield subscriber
    finally:
        await subscriber.close()


async def test_a_subscriber_sees_a_new_event_long_before_its_poll_interval(
    pg_store: PostgresEventStore,
) -> None:
    async with idle_subscriber(pg_store) as subscriber:
        await pg_store.append("ping-1", [Pinged(1)])
        event, waited = await subscriber.next_event(WELL_UNDER_POLL)

    assert event.data == Pinged(1)
    assert waited < WELL_UNDER_POLL


async def test_an_append_committed_by_the_callers_transaction_wakes_subscribers(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with idle_subscriber(pg_store) as subscriber:
        async with pool.acquire() as connection, connection.transaction():
            await pg_store.append("ping-1", [Pinged(1)], connection=connection)
            # The announcement goes out now; the subscriber must wait for the commit.
            await asyncio.sleep(0.3)
        event, waited = await subscriber.next_event(WELL_UNDER_POLL)

    assert event.data == Pinged(1)
    assert waited < WELL_UNDER_POLL


async def test_subscribers_of_other_categories_are_not_woken(pg_store: PostgresEventStore) -> None:
    async with idle_subscriber(pg_store, categories=["ping"]) as subscriber:
        await pg_store.append("other-1", [Pinged(1)])
        with pytest.raises(TimeoutError):
            await subscriber.next_event(0.5)
        await pg_store.append("ping-2", [Pinged(2)])
        event, _ = await subscriber.next_event(WELL_UNDER_POLL)

    assert event.stream_id == "ping-2"


async def test_without_notifications_a_subscriber_still_polls(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with idle_subscriber(pg_store, poll_interval=0.2) as subscriber:
        # Written behind the store's back: nobody announces it.
        await pool.execute(
            """
            SELECT eventstore.append_events('ping-1', 'ping', 'any', NULL, ARRAY[gen_random_uuid()],
                ARRAY['pinged'], ARRAY[1], ARRAY['{"n": 7}'::jsonb], ARRAY['{}'::jsonb])
            """
        )
        event, _ = await subscriber.next_event(5)

    assert event.data == Pinged(7)


async def test_a_subscriber_recovers_when_its_listen_connection_is_killed(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with idle_subscriber(pg_store) as subscriber:
        killed = await pool.fetchval(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE query = $1 AND datname = current_database()
            """,
            f'LISTEN "{CHANNEL}"',
        )
        assert killed == 1
        await pg_store.append("ping-1", [Pinged(1)])
        first, _ = await subscriber.next_event(WELL_UNDER_POLL)

        # Listening again: the next event is pushed too.
        await asyncio.sleep(0.2)
        await pg_store.append("ping-2", [Pinged(2)])
        second, waited = await subscriber.next_event(WELL_UNDER_POLL)

    assert (first.data, second.data) == (Pinged(1), Pinged(2))
    assert waited < WELL_UNDER_POLL


async def test_closing_the_last_subscription_gives_the_listen_connection_back(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    async def listening() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND datname = current_database()",
            f'LISTEN "{CHANNEL}"',
        )
        return count

    async with idle_subscriber(pg_store):
        async with idle_subscriber(pg_store):
            assert await listening() == 1
        assert await listening() == 1
    assert await listening() == 0


async def test_a_store_made_without_notifications_sends_none(
    pool: asyncpg.Pool[Any], registry: EventRegistry
) -> None:
    heard: list[str] = []

    def hear(*args: Any) -> None:
        heard.append(args[-1])

    async with pool.acquire() as listening:
        await listening.add_listener(CHANNEL, hear)
        quiet, loud = PostgresEventStore(pool, registry, notify=False), PostgresEventStore(pool, registry)
        await quiet.append("ping-1", [Pinged(1)])
        await quiet.close()
        await asyncio.sleep(0.3)
        assert heard == []
        await loud.append("ping-2", [Pinged(2)])
        await loud.close()
        async with asyncio.timeout(WELL_UNDER_POLL):
            while not heard:  # noqa: ASYNC110 - waiting for the listener's callback
                await asyncio.sleep(0.01)
        await listening.remove_listener(CHANNEL, hear)
    assert [payload.split(":")[0] for payload in heard] == ["ping"]
