"""Behaviour only the PostgreSQL store has: shared transactions, driver errors, retries."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import (
    NO_STREAM,
    EventRegistry,
    EventStoreError,
    LogPosition,
    Metadata,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    StoredEvent,
    StoreUnavailable,
    TransactionOrderConflict,
    connect,
)
from eventstore.connection import retrying

type LogReader = Callable[..., Awaitable[list[RecordedEvent]]]


class Noted(msgspec.Struct, frozen=True):
    text: str


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Noted, name="noted")
    return registry


@pytest.fixture
async def side_table(pool: asyncpg.Pool[Any]) -> str:
    await pool.execute("CREATE TABLE side_effects (note text PRIMARY KEY)")
    return "side_effects"


async def test_an_append_in_a_caller_transaction_commits_with_its_other_writes(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], side_table: str
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        result = await pg_store.append("note-1", [Noted("a")], NO_STREAM, connection=connection)
        await connection.execute("INSERT INTO side_effects VALUES ('a')")

    assert result.version == 0
    assert [e.data for e in await pg_store.read_stream("note-1")] == [Noted("a")]
    assert await pool.fetchval("SELECT count(*) FROM side_effects") == 1


async def test_an_append_in_a_caller_transaction_rolls_back_with_it(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], side_table: str
) -> None:
    async def work_that_fails() -> None:
        async with pool.acquire() as connection, connection.transaction():
            await pg_store.append("note-1", [Noted("a")], connection=connection)
            await pg_store.save_checkpoint("worker", LogPosition(5, 5), connection=connection)
            await connection.execute("INSERT INTO side_effects VALUES ('a')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await work_that_fails()

    assert await pg_store.stream_version("note-1") == -1
    assert await pg_store.read_all() == []
    assert await pg_store.load_checkpoint("worker") is None


async def test_a_conflict_leaves_the_callers_transaction_usable(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], side_table: str
) -> None:
    await pg_store.append("note-1", [Noted("a")])

    async with pool.acquire() as connection, connection.transaction():
        with pytest.raises(EventStoreError):
            await pg_store.append("note-1", [Noted("b")], NO_STREAM, connection=connection)
        await connection.execute("INSERT INTO side_effects VALUES ('still fine')")

    assert await pool.fetchval("SELECT count(*) FROM side_effects") == 1


async def test_appending_after_other_writes_of_an_older_transaction_is_an_order_conflict(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], side_table: str, read_log: LogReader
) -> None:
    await pg_store.append("note-1", [Noted("a")])
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        # This write gives the transaction its id, before the next append's.
        await connection.execute("INSERT INTO side_effects VALUES ('first')")
        await pg_store.append("note-1", [Noted("b")])

        with pytest.raises(TransactionOrderConflict) as raised:
            await pg_store.append("note-1", [Noted("c")], connection=connection)
        await transaction.rollback()

    assert raised.value.actual == 1
    log = await read_log(pg_store, 2)
    assert [e.version for e in log] == [0, 1]


async def test_appending_first_in_a_combined_transaction_cannot_conflict_on_order(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], side_table: str, read_log: LogReader
) -> None:
    await pg_store.append("note-1", [Noted("a")])
    async with pool.acquire() as connection, connection.transaction():
        await pg_store.append("note-1", [Noted("b")], 0, connection=connection)
        await connection.execute("INSERT INTO side_effects VALUES ('after')")
    await pg_store.append("note-1", [Noted("c")], 1)

    log = await read_log(pg_store, 3)
    assert [e.version for e in log] == [0, 1, 2]


async def test_driver_errors_surface_as_event_store_errors(
    fresh_database_url: str, registry: EventRegistry
) -> None:
    pool = await connect(fresh_database_url, min_size=1, max_size=2)
    store = PostgresEventStore(pool, registry)
    try:
        # Not migrated: every query fails inside asyncpg.
        with pytest.raises(EventStoreError) as raised:
            await store.append("note-1", [Noted("a")])
        assert isinstance(raised.value.__cause__, asyncpg.PostgresError)
        with pytest.raises(EventStoreError):
            await store.read_all()
    finally:
        await store.close()
        await pool.close()


async def test_a_server_that_does_not_answer_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await connect("postgresql://suite:suite@127.0.0.1:1/suite", min_size=1, max_size=1)


async def test_operations_survive_the_server_dropping_every_connection(
    pg_store: PostgresEventStore, migrated_database_url: str
) -> None:
    await pg_store.append("note-1", [Noted("a")])
    killer = await asyncpg.connect(migrated_database_url)
    try:
        killed = await killer.fetchval(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
            """
        )
    finally:
        await killer.close()

    assert killed >= 1
    assert [e.data for e in await pg_store.read_stream("note-1")] == [Noted("a")]
    assert (await pg_store.append("note-1", [Noted("b")], 0)).version == 1


async def test_transient_failures_are_retried_a_bounded_number_of_times() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return "done"

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

    assert await retrying(flaky, attempts=3, base_delay=0.001) == "done"
    calls = 0
    with pytest.raises(StoreUnavailable):
        await retrying(broken, attempts=4, base_delay=0.001)
    assert calls == 4


async def test_errors_that_are_not_transient_are_not_retried() -> None:
    calls = 0

    async def bad_sql() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.UndefinedTableError("relation does not exist")

    with pytest.raises(EventStoreError) as raised:
        await retrying(bad_sql, attempts=3, base_delay=0.001)

    assert calls == 1
    assert not isinstance(raised.value, StoreUnavailable)


async def test_stored_events_carry_the_payload_as_the_database_holds_it(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    await pg_store.append(
        "note-1", [NewEvent(data=Noted("a"), metadata=Metadata(actor="staff:1")), Noted("b")]
    )
    decoded = await read_log(pg_store, 2)

    stored = await pg_store.read_all_stored()

    held = await pool.fetch("SELECT data::text AS data FROM eventstore.events ORDER BY position")
    assert [e.data for e in stored] == [row["data"].encode() for row in held]
    assert [msgspec.json.decode(e.data, type=Noted) for e in stored] == [Noted("a"), Noted("b")]
    assert [(e.event_id, e.log_position, e.version, e.metadata) for e in stored] == [
        (e.event_id, e.log_position, e.version, e.metadata) for e in decoded
    ]
    assert await pg_store.read_all_stored(stored[0].log_position, limit=5) == stored[1:]
    await pg_store.append("memo-1", [Noted("c")])
    await read_log(pg_store, 3)
    memos = await pg_store.read_all_stored(categories=["memo"])
    assert [(e.stream_id, msgspec.json.decode(e.data, type=Noted)) for e in memos] == [("memo-1", Noted("c"))]


async def test_a_stored_subscription_follows_the_log_like_the_decoded_one(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.append("note-1", [Noted("a")])
    received: list[StoredEvent] = []
    async with contextlib.aclosing(pg_store.subscribe_all_stored(poll_interval=0.1)) as subscription:
        async for event in subscription:
            received.append(event)
            if len(received) == 1:
                await pg_store.append("note-2", [Noted("b")])
            if len(received) == 2:
                break
    assert [(e.stream_id, e.event_type, e.schema_version) for e in received] == [
        ("note-1", "noted", 1),
        ("note-2", "noted", 1),
    ]
