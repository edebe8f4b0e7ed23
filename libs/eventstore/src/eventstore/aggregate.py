"""Aggregates as two pure functions, and the load-decide-append loop around them.

An aggregate is a ``Decider``: ``decide(state, command) -> events`` says what happens,
``evolve(state, event) -> state`` folds what happened. Neither does I/O, so domain
tests need no store at all. ``execute`` does the I/O: load the state (latest
snapshot + later events), decide, append with the loaded version, and on a lost race
reload and decide again, a bounded number of times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from eventstore.errors import ConcurrencyError, EventDecodeError, EventStoreError, StreamTruncated
from eventstore.store import EventStore
from eventstore.types import AppendResult, Metadata, NewEvent

__all__ = ["Decider", "execute", "load"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decider[S, C, E: msgspec.Struct]:
    """The pure logic of one aggregate type.

    ``snapshot_every``: save a snapshot whenever the stream's version crosses a
    multiple of it (the state must then be msgspec-encodable; ``state_type``
    defaults to the type of ``initial_state``).
    """

    initial_state: S
    decide: Callable[[S, C], Sequence[E]]
    evolve: Callable[[S, E], S]
    snapshot_every: int | None = None
    state_type: type[S] | None = None

    def fold(self, state: S, events: Sequence[E]) -> S:
        """Apply ``events`` to ``state`` in order."""
        for event in events:
            state = self.evolve(state, event)
        return state


async def load[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str
) -> tuple[S, int]:
    """The aggregate's current state and the stream version it reflects (-1: new stream)."""
    state, version = decider.initial_state, -1
    if decider.snapshot_every:
        snapshot = await _load_snapshot(store, decider, stream_id)
        if snapshot is not None:
            version, state = snapshot
    events = await store.read_stream(stream_id, version + 1)
    if events and events[0].version != version + 1:
        raise StreamTruncated(stream_id, version + 1, events[0].version)
    if not events and version == -1:
        # A stream whose events were all truncated away still has its version.
        current = await store.stream_version(stream_id)
        if current != -1:
            raise StreamTruncated(stream_id, 0, current + 1)
    for recorded in events:
        # The registry decoded the payload into a registered Struct; the decider's
        # event type is the union of those it registered.
        state = decider.evolve(state, recorded.data)  # type: ignore[arg-type]
        version = recorded.version
    return state, version


async def execute[S, C, E: msgspec.Struct](
    store: EventStore,
    decider: Decider[S, C, E],
    stream_id: str,
    command: C,
    *,
    metadata: Metadata | None = None,
    expected_version: int | None = None,
    max_attempts: int = 3,
) -> AppendResult:
    """Load, decide, append; on ``ConcurrencyError`` reload and decide again.

    With ``expected_version`` (e.g. from an HTTP ``If-Match``) there is no retry: a
    stream that moved on raises ``ConcurrencyError`` before deciding. Commands that
    decide nothing return the current version and no positions.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    for attempt in range(1, max_attempts + 1):
        state, version = await load(store, decider, stream_id)
        if expected_version is not None and version != expected_version:
            raise ConcurrencyError(stream_id, expected_version, version)
        decided = decider.decide(state, command)
        if not decided:
            return AppendResult(stream_id, version, [])
        new_events = [NewEvent(data=event, metadata=metadata or Metadata()) for event in decided]
        try:
            result = await store.append(stream_id, new_events, version)
        except ConcurrencyError:
            if expected_version is not None or attempt == max_attempts:
                raise
            log.debug("%s moved on while deciding; retry %d/%d", stream_id, attempt, max_attempts - 1)
            continue
        await _maybe_snapshot(store, decider, stream_id, version, result.version, state, decided)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _load_snapshot[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str
) -> tuple[int, S] | None:
    state_type = decider.state_type or type(decider.initial_state)
    try:
        return await store.load_snapshot(stream_id, state_type)
    except EventDecodeError as e:
        # A snapshot is a cache. One written by an older shape of the state is
        # expected after a deploy: replay the events, the next snapshot replaces it.
        log.warning("ignoring snapshot of %s: %s", stream_id, e)
        return None


async def _maybe_snapshot[S, C, E: msgspec.Struct](
    store: EventStore,
    decider: Decider[S, C, E],
    stream_id: str,
    before: int,
    after: int,
    state: S,
    decided: Sequence[E],
) -> None:
    every = decider.snapshot_every
    if not every or (before + 1) // every == (after + 1) // every:
        return
    if not isinstance(state, msgspec.Struct):
        raise TypeError(f"snapshot_every needs a msgspec.Struct state, got {type(state).__name__}")
    new_state = decider.fold(state, decided)
    assert isinstance(new_state, msgspec.Struct)
    try:
        await store.save_snapshot(stream_id, after, new_state)
    except EventStoreError as e:
        # The events are stored; a missing snapshot only makes the next load longer.
        log.warning("could not snapshot %s at version %d: %s", stream_id, after, e)
