"""Claims: a caller's write that stands or falls with an append, in the append's own statement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import (
    Claim,
    ClaimRefused,
    ConcurrencyError,
    Decider,
    EventRegistry,
    MemoryEventStore,
    PostgresEventStore,
    StreamDeleted,
    execute,
)


class Noted(msgspec.Struct, frozen=True):
    text: str


class Note(msgspec.Struct, frozen=True):
    text: str


def decide(count: int, command: Note) -> list[Noted]:
    return [] if command.text == "" else [Noted(command.text)]


notes = Decider[int, Note, Noted](initial_state=0, decide=decide, evolve=lambda count, _: count + 1)

# A key that can be taken once, recording where the append left its stream.
CLAIM_KEY = """
INSERT INTO claims_test.keys (key, stream_id, version, position, event_types)
SELECT $1::text, a.stream_id, a.version, a.position, a.event_types FROM appended a
ON CONFLICT (key) DO NOTHING
RETURNING 1
"""


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Noted, name="noted")
    return registry


@pytest.fixture
async def keys(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await pool.execute(
        """
        CREATE SCHEMA claims_test;
        CREATE TABLE claims_test.keys (
            key text PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL,
            position bigint, event_types text[] NOT NULL
        );
        """
    )
    return pool


def claim(key: str) -> Claim:
    return Claim(CLAIM_KEY, (key,))


async def stored_keys(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT key, stream_id, version, position, event_types FROM claims_test.keys ORDER BY key"
    )
    return [tuple(row) for row in rows]


async def test_the_claim_is_written_with_the_append_and_sees_its_result(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [Noted("b"), Noted("c")], 0, claim=claim("k1"))

    assert result.version == 2
    assert await stored_keys(keys) == [("k1", "note-1", 2, result.positions[-1], ["noted", "noted"])]


async def test_a_refused_claim_undoes_the_append(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")], claim=claim("k1"))

    with pytest.raises(ClaimRefused):
        await pg_store.append("note-2", [Noted("b")], claim=claim("k1"))

    assert await pg_store.stream_version("note-2") == -1
    assert [row[1] for row in await stored_keys(keys)] == ["note-1"]


async def test_a_failed_append_writes_no_claim(pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]) -> None:
    await pg_store.append("note-1", [Noted("a")])
    await pg_store.delete_stream("note-2")

    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [Noted("b")], 5, claim=claim("k1"))
    with pytest.raises(StreamDeleted):
        await pg_store.append("note-2", [Noted("b")], claim=claim("k2"))

    assert await stored_keys(keys) == []


async def test_racing_appends_with_one_claim_keep_exactly_one(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    async def attempt(n: int) -> str:
        try:
            await pg_store.append(f"note-{n}", [Noted(str(n))], claim=claim("shared"))
        except ClaimRefused:
            return "refused"
        return "kept"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(8)))

    assert sorted(outcomes) == ["kept"] + ["refused"] * 7
    [(_, winner, *_)] = await stored_keys(keys)
    versions = [await pg_store.stream_version(f"note-{n}") for n in range(8)]
    assert [n for n, v in enumerate(versions) if v == 0] == [int(winner.removeprefix("note-"))]


async def test_a_claim_without_events_holds_the_expected_version_and_names_the_head(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    first = await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [], 0, claim=claim("k1"))
    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [], 3, claim=claim("k2"))
    with pytest.raises(ClaimRefused):
        await pg_store.append("note-1", [], 0, claim=claim("k1"))

    assert (result.version, result.positions) == (0, [])
    assert await stored_keys(keys) == [("k1", "note-1", 0, first.positions[0], [])]


async def test_execute_claims_with_the_append_and_with_a_command_that_changes_nothing(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    placed = await execute(pg_store, notes, "note-1", Note("a"), claim=claim("k1"))
    unchanged = await execute(pg_store, notes, "note-1", Note(""), claim=claim("k2"))
    with pytest.raises(ClaimRefused):
        await execute(pg_store, notes, "note-1", Note("b"), claim=claim("k1"))

    assert unchanged.position == placed.position
    assert await stored_keys(keys) == [
        ("k1", "note-1", 0, placed.position, ["noted"]),
        ("k2", "note-1", 0, placed.position, []),
    ]
    assert await pg_store.stream_version("note-1") == 0


async def test_execute_makes_a_claim_from_the_state_after_the_command_and_its_events(
    pg_store: PostgresEventStore, keys: asyncpg.Pool[Any]
) -> None:
    # The claim is made on each attempt from what the command decided: here the key names the
    # count of notes after it, and a command that decided nothing makes none.
    seen: list[tuple[int, int]] = []

    def claim_after(count: int, events: Sequence[Noted]) -> Claim | None:
        seen.append((count, len(events)))
        return claim(f"count-{count}") if events else None

    first = await execute(pg_store, notes, "note-1", Note("a"), claim=claim_after)
    await execute(pg_store, notes, "note-1", Note(""), claim=claim_after)
    await execute(pg_store, notes, "note-1", Note("b"), claim=claim_after)

    assert seen == [(1, 1), (1, 0), (2, 1)]
    assert [key[:3] for key in await stored_keys(keys)] == [
        ("count-1", "note-1", 0),
        ("count-2", "note-1", 1),
    ]
    assert first.version == 0


async def test_the_memory_store_refuses_a_claim_rather_than_ignore_it(registry: EventRegistry) -> None:
    store = MemoryEventStore(registry)

    with pytest.raises(NotImplementedError):
        await store.append("note-1", [Noted("a")], claim=claim("k1"))
