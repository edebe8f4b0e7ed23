"""Claims: an idempotency key that an append takes, written by the store in the append's own statement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
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
    StoredClaim,
    StreamDeleted,
    execute,
    purge_expired_claims,
    read_claim,
)


class Noted(msgspec.Struct, frozen=True):
    text: str


class Note(msgspec.Struct, frozen=True):
    text: str


def decide(count: int, command: Note) -> list[Noted]:
    return [] if command.text == "" else [Noted(command.text)]


notes = Decider[int, Note, Noted](initial_state=0, decide=decide, evolve=lambda count, _: count + 1)


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Noted, name="noted")
    return registry


def claim(key: str, *, scope: str = "alice", fingerprint: bytes = b"f1") -> Claim:
    return Claim(scope=scope, key=key, fingerprint=fingerprint, ttl=timedelta(hours=1))


async def claims(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    """Every claim row, live or not, as (key, stream_id, version, position, event_types)."""
    rows = await pool.fetch(
        "SELECT key, stream_id, version, position, event_types FROM eventstore.claims ORDER BY key"
    )
    return [tuple(row) for row in rows]


async def expire(pool: asyncpg.Pool[Any], key: str) -> None:
    await pool.execute(
        "UPDATE eventstore.claims SET expires_at = now() - interval '1 second' WHERE key = $1", key
    )


async def test_the_claim_is_written_with_the_append_and_records_its_result(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [Noted("b"), Noted("c")], 0, claim=claim("k1"))

    assert result.version == 2
    stored = await read_claim(pool, "alice", "k1")
    assert stored is not None
    assert stored == StoredClaim(
        scope="alice",
        key="k1",
        fingerprint=b"f1",
        stream_id="note-1",
        version=2,
        position=result.positions[-1],
        event_types=["noted", "noted"],
        expires_at=stored.expires_at,
    )
    assert (
        timedelta(minutes=59) < stored.expires_at - await pool.fetchval("SELECT now()") <= timedelta(hours=1)
    )


async def test_the_claim_costs_the_append_no_extra_statement(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    statements: list[str] = []
    async with pool.acquire() as connection:
        # The first use of a connection also asks the server about types; the second is what counts.
        await pg_store.append("note-0", [Noted("a")], claim=claim("k0"), connection=connection)
        connection.add_query_logger(lambda record: statements.append(record.query))
        await pg_store.append("note-1", [Noted("a")], claim=claim("k1"), connection=connection)

    assert len(statements) == 1
    [event] = await pg_store.read_stream("note-1")
    assert (await claims(pool))[1] == ("k1", "note-1", 0, event.position, ["noted"])


async def test_a_refused_claim_undoes_the_append(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")], claim=claim("k1"))

    with pytest.raises(ClaimRefused):
        await pg_store.append("note-2", [Noted("b")], claim=claim("k1", fingerprint=b"other"))

    assert await pg_store.stream_version("note-2") == -1
    stored = await read_claim(pool, "alice", "k1")
    assert stored is not None
    assert (stored.stream_id, stored.fingerprint) == ("note-1", b"f1")


async def test_keys_belong_to_their_scope(pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]) -> None:
    await pg_store.append("note-1", [Noted("a")], claim=claim("k1", scope="alice"))
    await pg_store.append("note-2", [Noted("b")], claim=claim("k1", scope="bob"))

    found = [await read_claim(pool, scope, "k1") for scope in ("alice", "bob", "carol")]

    assert [None if c is None else c.stream_id for c in found] == ["note-1", "note-2", None]


async def test_a_failed_append_writes_no_claim(pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]) -> None:
    await pg_store.append("note-1", [Noted("a")])
    await pg_store.delete_stream("note-2")

    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [Noted("b")], 5, claim=claim("k1"))
    with pytest.raises(StreamDeleted):
        await pg_store.append("note-2", [Noted("b")], claim=claim("k2"))

    assert await claims(pool) == []


async def test_racing_appends_with_one_claim_keep_exactly_one(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    async def attempt(n: int) -> str:
        try:
            await pg_store.append(f"note-{n}", [Noted(str(n))], claim=claim("shared"))
        except ClaimRefused:
            return "refused"
        return "kept"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(8)))

    assert sorted(outcomes) == ["kept"] + ["refused"] * 7
    [(_, winner, *_)] = await claims(pool)
    versions = [await pg_store.stream_version(f"note-{n}") for n in range(8)]
    assert [n for n, v in enumerate(versions) if v == 0] == [int(winner.removeprefix("note-"))]


async def test_an_expired_claim_is_not_read_and_its_key_can_be_claimed_again(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")], claim=claim("k1"))
    await expire(pool, "k1")

    expired = await read_claim(pool, "alice", "k1")
    await pg_store.append("note-2", [Noted("b")], claim=claim("k1", fingerprint=b"f2"))
    again = await read_claim(pool, "alice", "k1")

    assert expired is None
    assert again is not None
    assert (again.stream_id, again.fingerprint) == ("note-2", b"f2")


async def test_expired_claims_are_purged_in_batches_and_live_ones_kept(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    for n in range(3):
        await pg_store.append(f"note-{n}", [Noted("a")], claim=claim(f"k{n}"))
    await expire(pool, "k0")
    await expire(pool, "k1")

    purged = [await purge_expired_claims(pool, batch=1) for _ in range(3)]

    assert purged == [1, 1, 0]
    assert [row[0] for row in await claims(pool)] == ["k2"]


async def test_a_claim_without_events_holds_the_expected_version_and_names_the_head(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    first = await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [], 0, claim=claim("k1"))
    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [], 3, claim=claim("k2"))
    with pytest.raises(ClaimRefused):
        await pg_store.append("note-1", [], 0, claim=claim("k1"))

    assert (result.version, result.positions) == (0, [])
    assert await claims(pool) == [("k1", "note-1", 0, first.positions[0], [])]


async def test_execute_claims_with_the_append_and_with_a_command_that_changes_nothing(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
) -> None:
    placed = await execute(pg_store, notes, "note-1", Note("a"), claim=claim("k1"))
    unchanged = await execute(pg_store, notes, "note-1", Note(""), claim=claim("k2"))
    with pytest.raises(ClaimRefused):
        await execute(pg_store, notes, "note-1", Note("b"), claim=claim("k1"))

    assert unchanged.position == placed.position
    assert await claims(pool) == [
        ("k1", "note-1", 0, placed.position, ["noted"]),
        ("k2", "note-1", 0, placed.position, []),
    ]
    assert await pg_store.stream_version("note-1") == 0


async def test_execute_makes_a_claim_from_the_state_after_the_command_and_its_events(
    pg_store: PostgresEventStore, pool: asyncpg.Pool[Any]
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
    assert [row[:3] for row in await claims(pool)] == [("count-1", "note-1", 0), ("count-2", "note-1", 1)]
    assert first.version == 0


async def test_the_memory_store_refuses_a_claim_rather_than_ignore_it(registry: EventRegistry) -> None:
    store = MemoryEventStore(registry)

    with pytest.raises(NotImplementedError):
        await store.append("note-1", [Noted("a")], claim=claim("k1"))
