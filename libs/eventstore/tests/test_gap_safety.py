"""The global log never skips an event, even when transactions commit out of position order.

Writers on separate connections hold their transactions open for random short times
after taking a position, so later positions often commit first. A reader tailing
``read_all`` and a subscriber must each see every event exactly once, in log order.
The same harness run with a naive ``position > last`` reader shows that it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import EventRegistry, LogPosition, PostgresEventStore, RecordedEvent

WRITERS = 8
TRANSACTIONS_PER_WRITER = 50
MAX_HOLD_SECONDS = 0.015

type LogReader = Callable[..., Awaitable[list[RecordedEvent]]]


class Tick(msgspec.Struct, frozen=True):
    writer: int
    sequence: int


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Tick, name="tick")
    return registry


class GapSafeReader:
    """Tails the store's ``read_all`` with a (transaction id, position) cursor."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.cursor = LogPosition.START
        self.seen: list[uuid.UUID] = []

    async def poll(self) -> int:
        page = await self.store.read_all(self.cursor, limit=50)
        if page:
            self.seen.extend(event.event_id for event in page)
            self.cursor = page[-1].log_position
        return len(page)

    def caught_up_with(self, log: list[RecordedEvent]) -> bool:
        return self.cursor >= log[-1].log_position


class NaivePositionReader:
    """What the gap-safe reader replaces: ``WHERE position > last ORDER BY position``."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool
        self.cursor = 0
        self.seen: list[uuid.UUID] = []

    async def poll(self) -> int:
        rows = await self.pool.fetch(
            "SELECT position, event_id FROM eventstore.events WHERE position > $1 ORDER BY position LIMIT 50",
            self.cursor,
        )
        if rows:
            self.seen.extend(row["event_id"] for row in rows)
            self.cursor = rows[-1]["position"]
        return len(rows)

    def caught_up_with(self, log: list[RecordedEvent]) -> bool:
        return self.cursor >= max(event.position for event in log)


async def write_with_late_commits(url: str, store: PostgresEventStore, writer: int) -> int:
    """Append in transactions held open for a random while after the append; returns events written."""
    connection = await asyncpg.connect(url)
    written = 0
    try:
        for sequence in range(TRANSACTIONS_PER_WRITER):
            count = random.choice((1, 1, 1, 2, 3))
            async with connection.transaction():
                await store.append(
                    f"gap-{writer}",
                    [Tick(writer, sequence * 10 + i) for i in range(count)],
                    connection=connection,
                )
                await asyncio.sleep(random.uniform(0, MAX_HOLD_SECONDS))
            written += count
    finally:
        await connection.close()
    return written


async def tail(reader: GapSafeReader | NaivePositionReader) -> None:
    while True:
        if not await reader.poll():
            await asyncio.sleep(0.001)


async def subscribe(store: PostgresEventStore, into: list[uuid.UUID]) -> None:
    async with contextlib.aclosing(store.subscribe_all(poll_interval=0.05, batch_size=50)) as subscription:
        async for event in subscription:
            into.append(event.event_id)


async def run_harness(
    url: str, store: PostgresEventStore, reader: GapSafeReader | NaivePositionReader, read_log: LogReader
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Run writers, the reader and a subscriber; return (reader saw, subscriber saw), log checked."""
    subscribed: list[uuid.UUID] = []
    reading = asyncio.create_task(tail(reader))
    subscribing = asyncio.create_task(subscribe(store, subscribed))
    try:
        written = sum(await asyncio.gather(*(write_with_late_commits(url, store, w) for w in range(WRITERS))))
        log = await read_log(store, written, limit=written + 1)
        assert len(log) == written
        async with asyncio.timeout(20):
            while True:
                if reader.caught_up_with(log) and len(subscribed) >= written:
                    break
                await asyncio.sleep(0.01)
        # Give a reader that double-delivers a chance to show it.
        await asyncio.sleep(0.1)
    finally:
        reading.cancel()
        subscribing.cancel()
        await asyncio.gather(reading, subscribing, return_exceptions=True)
    log_ids = [event.event_id for event in log]
    assert subscribed == log_ids, "the subscriber must see every event once, in log order"
    return reader.seen, log_ids


async def test_a_tailing_reader_and_a_subscriber_see_every_event_once_in_log_order(
    pg_store: PostgresEventStore, migrated_database_url: str, read_log: LogReader
) -> None:
    reader = GapSafeReader(pg_store)

    seen, log = await run_harness(migrated_database_url, pg_store, reader, read_log)

    assert len(set(seen)) == len(seen), "no event twice"
    assert set(seen) == set(log), "no event skipped"
    assert seen == log, "in log order"


async def test_the_same_harness_catches_a_naive_position_reader_skipping_events(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], migrated_database_url: str, read_log: LogReader
) -> None:
    reader = NaivePositionReader(pool)

    seen, log = await run_harness(migrated_database_url, pg_store, reader, read_log)

    skipped = set(log) - set(seen)
    assert skipped, "late commits below the naive reader's cursor must have been skipped"
    assert set(seen) <= set(log)


async def test_an_event_whose_transaction_commits_after_a_later_one_is_handed_out_first(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    naive = NaivePositionReader(pool)
    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        early = await pg_store.append("gap-slow", [Tick(1, 1)], connection=slow)
        late = await pg_store.append("gap-fast", [Tick(2, 1)])
        assert early.positions[0] < late.positions[0]

        # The fast transaction committed, but the slow one holds a lower place in the log.
        assert await pg_store.read_all() == []
        await naive.poll()
        assert naive.cursor == late.positions[0]

        await transaction.commit()

    log = await read_log(pg_store, 2)
    assert [event.position for event in log] == [early.positions[0], late.positions[0]]
    await naive.poll()
    assert len(naive.seen) == 1, "the naive reader moved past the slow event and never sees it"


async def test_a_transaction_left_open_in_another_database_does_not_hold_the_log_back(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    other_database = await asyncpg.connect(database_url)
    try:
        async with other_database.transaction():
            await other_database.fetchval("SELECT pg_current_xact_id()")  # an id, held open

            result = await pg_store.append("gap-1", [Tick(1, 1)])
            visible = await pg_store.read_all()
    finally:
        await other_database.close()

    assert [event.position for event in visible] == result.positions


async def test_a_transaction_left_open_in_the_same_database_holds_the_log_back(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any], read_log: LogReader
) -> None:
    async with pool.acquire() as idle:
        transaction = idle.transaction()
        await transaction.start()
        await idle.fetchval("SELECT pg_current_xact_id()")  # it might still append

        await pg_store.append("gap-1", [Tick(1, 1)])
        held_back = await pg_store.read_all()
        await transaction.rollback()

    assert held_back == []
    assert len(await read_log(pg_store, 1)) == 1
