"""The store's shared operations: leader election on an advisory lock, and a checkpoint's lag."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import (
    EventRegistry,
    EventStoreError,
    PostgresEventStore,
    RecordedEvent,
    StoreUnavailable,
    checkpoint_lag,
    leadership,
)

type LogReader = Callable[..., Awaitable[list[RecordedEvent]]]

KEY = 0x7465737473  # "tests"


class Noted(msgspec.Struct, frozen=True):
    text: str


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Noted, name="noted")
    return registry


async def test_one_contender_leads_and_the_other_takes_over_when_its_session_ends(
    migrated_database_url: str,
) -> None:
    key = KEY + uuid.uuid4().int % 1000
    standing_by = 0
    stood_by_twice = asyncio.Event()

    def on_standby() -> None:
        nonlocal standing_by
        standing_by += 1
        if standing_by == 2:
            stood_by_twice.set()

    async with leadership(migrated_database_url, key, poll_interval=0.02) as first_lost:
        second = asyncio.create_task(_lead_once(migrated_database_url, key, on_standby))
        await asyncio.wait_for(stood_by_twice.wait(), 10)
        assert not second.done()
        assert not first_lost.is_set()

    # The first leader left: its connection closed and the lock went with it.
    await asyncio.wait_for(second, 10)


async def _lead_once(dsn: str, key: int, on_standby: Any) -> None:
    async with leadership(dsn, key, poll_interval=0.02, on_standby=on_standby):
        pass


async def test_a_leader_whose_lock_connection_is_killed_is_told_to_step_down(
    migrated_database_url: str,
) -> None:
    name = f"lead-{uuid.uuid4().hex[:8]}"
    async with leadership(
        migrated_database_url, KEY, poll_interval=0.02, check_interval=0.02, application_name=name
    ) as lost:
        killer = await asyncpg.connect(migrated_database_url)
        try:
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                name,
            )
        finally:
            await killer.close()
        await asyncio.wait_for(lost.wait(), 10)

    assert killed == 1


async def test_leadership_without_a_database_raises_the_stores_error() -> None:
    with pytest.raises(StoreUnavailable):
        async with leadership("postgresql://nobody@127.0.0.1:9/none", KEY, poll_interval=0.01):
            pass


async def test_the_lag_of_a_checkpoint_counts_what_comes_after_it(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    nothing = await checkpoint_lag(pool, "reader")
    for n in range(5):
        await pg_store.append(f"note-{n}", [Noted(str(n))])
    events = await read_log(pg_store, 5)

    before = await checkpoint_lag(pool, "reader")
    await pg_store.save_checkpoint("reader", events[2].log_position)
    behind = await checkpoint_lag(pool, "reader")
    await pg_store.save_checkpoint("reader", events[-1].log_position)
    async with pool.acquire() as connection:
        caught_up = await checkpoint_lag(connection, "reader")

    assert (nothing.events, nothing.seconds) == (0, 0.0)
    assert before.events == 5
    assert behind.events == 2
    assert behind.seconds >= 0.0
    assert (caught_up.events, caught_up.seconds) == (0, 0.0)


async def test_the_lag_counts_up_to_its_cap(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    await pg_store.append("note-1", [Noted(str(n)) for n in range(4)])
    await read_log(pg_store, 4)

    assert (await checkpoint_lag(pool, "reader", count_cap=3)).events == 3
    assert (await checkpoint_lag(pool, "reader")).events == 4


async def test_the_lag_of_some_categories_leaves_the_others_out(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    # A reader of `note` streams is caught up: the `other` events after its checkpoint, which it
    # is never handed, are no lag of its.
    await pg_store.append("note-1", [Noted("a"), Noted("b")])
    await pg_store.append("other-1", [Noted("x"), Noted("y")])
    events = await read_log(pg_store, 4)
    await pg_store.save_checkpoint("reader", events[0].log_position)

    notes = await checkpoint_lag(pool, "reader", categories=["note"])
    await pg_store.save_checkpoint("reader", events[1].log_position)
    caught_up = await checkpoint_lag(pool, "reader", categories=["note"])
    both = await checkpoint_lag(pool, "reader", categories=["note", "other"])
    everything = await checkpoint_lag(pool, "reader")
    capped = await checkpoint_lag(pool, "reader", categories=["note", "other"], count_cap=1)

    assert notes.events == 1
    assert (caught_up.events, caught_up.seconds) == (0, 0.0)
    assert both.events == everything.events == 2
    assert capped.events == 1
    assert (await checkpoint_lag(pool, "reader", categories=[])).events == 0


async def test_the_lag_of_an_unreachable_database_is_the_stores_error(pool: asyncpg.Pool[Any]) -> None:
    pool.terminate()

    with pytest.raises(EventStoreError) as raised:
        await checkpoint_lag(pool, "reader")

    assert isinstance(raised.value.__cause__, asyncpg.InterfaceError)
