"""Property tests: any sequence of appends keeps a stream's versions contiguous and its reads consistent.

A list of event ids is the model of a stream. Hypothesis generates appends with every
kind of expected version (right, stale, ahead, sentinels) and retries of earlier
appends; after each step the store must agree with the model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgspec
import pytest
from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    EventRegistry,
    EventStore,
    ExpectedVersion,
    NewEvent,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


class Step(msgspec.Struct, frozen=True):
    n: int


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Step, name="step")
    return registry


@dataclass(frozen=True)
class Append:
    expectation: str  # "any" | "no_stream" | "exists" | "offset"
    offset: int  # for "offset": expected = current version + offset
    count: int


@dataclass(frozen=True)
class Retry:
    which: int  # index into the successful appends so far


@dataclass
class Model:
    ids: list[uuid.UUID] = field(default_factory=list)
    done: list[tuple[list[NewEvent], ExpectedVersion, AppendResult]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return len(self.ids) - 1


operations = st.lists(
    st.one_of(
        st.builds(
            Append,
            expectation=st.sampled_from(["any", "no_stream", "exists", "offset", "offset", "offset"]),
            offset=st.integers(-3, 2),
            count=st.integers(1, 3),
        ),
        st.builds(Retry, which=st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)
reads = st.lists(
    st.tuples(st.integers(-1, 14), st.one_of(st.none(), st.integers(1, 5)), st.booleans()),
    max_size=4,
)

property_settings = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def expectation_for(step: Append, model: Model) -> tuple[ExpectedVersion, bool]:
    """The expected version to send and whether the append must succeed."""
    match step.expectation:
        case "any":
            return ANY, True
        case "no_stream":
            return NO_STREAM, model.version == -1
        case "exists":
            return STREAM_EXISTS, model.version >= 0
    expected = max(-1, model.version + step.offset)
    return expected, expected == model.version


@property_settings
@given(steps=operations, read_plan=reads)
async def test_versions_stay_contiguous_and_reads_match_the_model(
    store: EventStore, steps: list[Append | Retry], read_plan: list[tuple[int, int | None, bool]]
) -> None:
    stream_id = f"prop-{uuid.uuid4().hex}"
    model = Model()

    for step in steps:
        if isinstance(step, Retry):
            if not model.done:
                continue
            events, expected, first_result = model.done[step.which % len(model.done)]
            assert await store.append(stream_id, events, expected) == first_result, "a retry is idempotent"
            continue
        expected, succeeds = expectation_for(step, model)
        events = [NewEvent(data=Step(len(model.ids) + i)) for i in range(step.count)]
        if succeeds:
            result = await store.append(stream_id, events, expected)
            model.ids.extend(event.event_id for event in events)
            assert result.version == model.version
            assert len(result.positions) == step.count
            model.done.append((events, expected, result))
        else:
            with pytest.raises(ConcurrencyError) as raised:
                await store.append(stream_id, events, expected)
            assert raised.value.actual == model.version
        assert await store.stream_version(stream_id) == model.version

    stored = await store.read_stream(stream_id)
    assert [e.version for e in stored] == list(range(len(model.ids)))
    assert [e.event_id for e in stored] == model.ids
    positions = [e.position for e in stored]
    assert positions == sorted(positions)
    assert [e.event_id for e in await store.read_stream(stream_id, None, backward=True)] == model.ids[::-1]

    for start, limit, backward in read_plan:
        from_version = start if backward else max(start, 0)
        got = await store.read_stream(stream_id, from_version, backward=backward, limit=limit)
        if backward:
            top = model.version if start < 0 else min(start, model.version)
            want = model.ids[top::-1] if top >= 0 else []
        else:
            want = model.ids[max(start, 0) :]
        assert [e.event_id for e in got] == want[:limit]
