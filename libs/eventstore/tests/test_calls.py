"""Calls: a SQL function of the caller's, run by the store in the append's own statement (``Call``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from eventstore import (
    Call,
    ClaimRefused,
    ConcurrencyError,
    EventRegistry,
    MemoryEventStore,
    NewEvent,
    PostgresEventStore,
    StreamDeleted,
    execute,
)

# The claims tests' notes, and their `registry` fixture (imported to be found by pytest here too).
from libs.eventstore.tests.test_claims import Note, Noted, notes, registry  # noqa: F401

# The caller's own table and function, as a service would migrate them: it records where each append
# left its stream with the caller's label, and refuses (returns false) a label "no" and NULL for "null".
_CALLER_SCHEMA = """
CREATE SCHEMA caller;
CREATE TABLE caller.seen (stream_id text, version bigint, position bigint, label text, count int);
CREATE FUNCTION caller.record(
    p_stream_id text, p_version bigint, p_position bigint, p_label text, p_count int
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO caller.seen VALUES (p_stream_id, p_version, p_position, p_label, p_count);
    RETURN CASE p_label WHEN 'no' THEN false WHEN 'null' THEN NULL ELSE true END;
END
$$;
"""


@pytest.fixture
async def caller(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await pool.execute(_CALLER_SCHEMA)
    return pool


async def seen(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT stream_id, version, position, label, count FROM caller.seen ORDER BY version"
    )
    return [tuple(row) for row in rows]


def record(label: str, count: int = 0) -> Call:
    return Call("caller.record", (label, count))


async def test_the_call_runs_with_the_append_and_gets_where_it_left_the_stream(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any]
) -> None:
    await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [Noted("b"), Noted("c")], 0, claim=record("x", 2))

    assert await seen(caller) == [("note-1", 2, result.positions[-1], "x", 2)]


async def test_the_call_costs_the_append_no_extra_statement(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any]
) -> None:
    statements: list[str] = []
    async with caller.acquire() as connection:
        # The first use of a connection also asks the server about types; the second is what counts.
        await pg_store.append("note-0", [Noted("a")], claim=record("x"), connection=connection)
        connection.add_query_logger(lambda record: statements.append(record.query))
        await pg_store.append("note-1", [Noted("a")], claim=record("y"), connection=connection)

    assert len(statements) == 1
    assert [row[3] for row in await seen(caller)] == ["x", "y"]


@pytest.mark.parametrize("label", ["no", "null"])
async def test_a_call_that_returns_false_or_null_undoes_the_append(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any], label: str
) -> None:
    with pytest.raises(ClaimRefused):
        await pg_store.append("note-1", [Noted("a")], claim=record(label))

    assert await pg_store.stream_version("note-1") == -1
    assert await seen(caller) == []


async def test_an_append_that_writes_nothing_calls_nothing(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any]
) -> None:
    event = NewEvent(data=Noted("a"))
    await pg_store.append("note-1", [event], -1)
    await pg_store.delete_stream("note-2")

    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [Noted("b")], 5, claim=record("conflict"))
    with pytest.raises(StreamDeleted):
        await pg_store.append("note-2", [Noted("b")], claim=record("deleted"))
    retried = await pg_store.append("note-1", [event], -1, claim=record("retry"))

    assert retried.version == 0
    assert await seen(caller) == []


async def test_a_call_without_events_holds_the_expected_version_and_gets_the_head(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any]
) -> None:
    first = await pg_store.append("note-1", [Noted("a")])

    result = await pg_store.append("note-1", [], 0, claim=record("same"))
    with pytest.raises(ConcurrencyError):
        await pg_store.append("note-1", [], 3, claim=record("late"))
    with pytest.raises(ClaimRefused):
        await pg_store.append("note-1", [], 0, claim=record("no"))
    await pg_store.append("note-2", [], -1, claim=record("new"))

    assert (result.version, result.positions) == (0, [])
    assert await seen(caller) == [
        ("note-2", -1, None, "new", 0),
        ("note-1", 0, first.positions[0], "same", 0),
    ]


async def test_execute_makes_the_call_from_the_state_after_the_command(
    pg_store: PostgresEventStore, caller: asyncpg.Pool[Any]
) -> None:
    def counted(count: int, events: Sequence[Noted]) -> Call | None:
        return record("counted", count) if events else None

    await execute(pg_store, notes, "note-1", Note("a"), claim=counted)
    await execute(pg_store, notes, "note-1", Note(""), claim=counted)
    await execute(pg_store, notes, "note-1", Note("b"), claim=counted)

    assert [(row[1], row[4]) for row in await seen(caller)] == [(0, 1), (1, 2)]


@pytest.mark.parametrize(
    "name",
    [
        "record",
        "caller.",
        "Caller.record",
        'caller."record"',
        "caller.record()",
        "a.b.c",
        "caller.record; drop",
    ],
)
def test_a_call_names_its_function_as_a_plain_qualified_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"schema\.name"):
        Call(name)


async def test_the_memory_store_refuses_a_call_rather_than_ignore_it(
    registry: EventRegistry,  # noqa: F811
) -> None:
    store = MemoryEventStore(registry)

    with pytest.raises(NotImplementedError):
        await store.append("note-1", [Noted("a")], claim=record("x"))
