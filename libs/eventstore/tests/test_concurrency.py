"""Optimistic concurrency under real contention: many writers, one stream."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest
from eventstore import ConcurrencyError, EventRegistry, EventStore, NewEvent

WRITERS = 16
ROUNDS = 15


class Claimed(msgspec.Struct, frozen=True):
    writer: int
    round: int


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Claimed, name="claimed")
    return registry


async def test_writers_racing_with_the_same_expected_version_have_exactly_one_winner_per_version(
    store: EventStore,
) -> None:
    barrier = asyncio.Barrier(WRITERS)
    outcomes: list[tuple[int, int, int | None]] = []  # (round, writer, version won or None)
    conflicts: list[tuple[int, ConcurrencyError]] = []

    async def writer(number: int) -> None:
        for round_ in range(ROUNDS):
            # Everyone reads the same version, then everyone appends expecting it.
            expected = await store.stream_version("race-1")
            await barrier.wait()
            try:
                result = await store.append("race-1", [Claimed(number, round_)], expected)
            except ConcurrencyError as e:
                conflicts.append((expected, e))
                outcomes.append((round_, number, None))
            else:
                assert result.version == expected + 1
                outcomes.append((round_, number, result.version))
            await barrier.wait()

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))

    assert all(e.expected == expected and e.actual == expected + 1 for expected, e in conflicts)
    assert len(conflicts) == (WRITERS - 1) * ROUNDS
    winners = Counter(round_ for round_, _, version in outcomes if version is not None)
    assert winners == dict.fromkeys(range(ROUNDS), 1)
    events = await store.read_stream("race-1")
    assert [e.version for e in events] == list(range(ROUNDS))
    won = {(round_, writer): version for round_, writer, version in outcomes if version is not None}
    assert {(e.data.round, e.data.writer): e.version for e in events} == won  # type: ignore[attr-defined]


async def test_writers_retrying_on_conflict_lose_no_event_and_double_no_version(store: EventStore) -> None:
    per_writer = 10

    async def writer(number: int) -> None:
        for i in range(per_writer):
            event = NewEvent(data=Claimed(number, i))
            while True:
                expected = await store.stream_version("race-1")
                try:
                    await store.append("race-1", [event], expected)
                    break
                except ConcurrencyError:
                    continue

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))

    events = await store.read_stream("race-1")
    assert [e.version for e in events] == list(range(WRITERS * per_writer))
    claimed = Counter((e.data.writer, e.data.round) for e in events)  # type: ignore[attr-defined]
    assert claimed == {(w, i): 1 for w in range(WRITERS) for i in range(per_writer)}
