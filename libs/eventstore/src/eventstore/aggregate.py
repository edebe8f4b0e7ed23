"""Aggregates as two pure functions (``Decider``), and the load-decide-append loop around them.

``decide`` and ``evolve`` do no I/O, so domain tests need no store. ``execute`` is the
suite's one write loop; a ``StateCache`` lets a long-lived process load only the events
after the state it last saw. See ``docs/event-store.md``, "Running a command".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from eventstore.errors import ConcurrencyError, EventDecodeError, EventStoreError, StreamTruncated
from eventstore.store import EventStore
from eventstore.types import Call, Claim, Metadata, NewEvent, RecordedEvent

__all__ = ["Decider", "Executed", "Loaded", "StateCache", "execute", "load", "load_many"]

log = logging.getLogger(__name__)

# Between attempts after a lost race: a little jitter so that writers that collided once do not
# collide again in lockstep; scaled by the attempt number.
_RETRY_JITTER_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class Decider[S, C, E: msgspec.Struct]:
    """The pure logic of one aggregate type.

    ``authorize``: an optional access rule, ``authorize(state, command)`` raising when
    the command's issuer may not act on this aggregate at all. ``execute`` runs it on
    the loaded state before anything else about the stream is checked (an expected
    version included), so a refusal cannot tell a stranger how far the stream got.

    ``snapshot_every``: save a snapshot whenever the stream's version crosses a
    multiple of it. The state must then be a msgspec Struct (``state_type``, which
    defaults to the type of ``initial_state``); a ``None`` state is not snapshotted.
    """

    initial_state: S
    decide: Callable[[S, C], Sequence[E]]
    evolve: Callable[[S, E], S]
    authorize: Callable[[S, C], None] | None = None
    snapshot_every: int | None = None
    state_type: type[S] | None = None

    def __post_init__(self) -> None:
        # Checked here, not when the first snapshot is due: by then the events are stored.
        state_type = self.state_type or type(self.initial_state)
        if self.snapshot_every and not issubclass(state_type, msgspec.Struct):
            raise TypeError(f"snapshot_every needs a msgspec.Struct state_type, got {state_type.__name__}")

    def fold(self, state: S, events: Sequence[E]) -> S:
        """Apply ``events`` to ``state`` in order."""
        for event in events:
            state = self.evolve(state, event)
        return state


@dataclass(frozen=True, slots=True)
class Loaded[S]:
    """An aggregate's state, the stream version it reflects (-1: new stream), and where that is in the log.

    ``position`` is the global position of the event at ``version``: a consistency
    token for a command that changed nothing. None when the stream has no events (or
    truncation erased that event and a snapshot stands in for it).
    """

    state: S
    version: int
    position: int | None


@dataclass(frozen=True, slots=True)
class Executed[E]:
    """What a command did to its stream.

    ``events`` are the events the command decided (none when it changed nothing),
    appended at ``positions``; ``version`` and ``position`` say where the stream
    stands after the command: its version, and the global position of its last
    event (None for a stream without events).
    """

    stream_id: str
    version: int
    position: int | None
    events: Sequence[E]
    positions: list[int]


class StateCache:
    """The states this process last loaded or wrote, by decider and stream id, least recently used dropped.

    ``load`` reads only the events after a cached state; ``execute`` decides on it
    without reading, its append's version check proving it current (see
    ``docs/event-store.md``, "The state cache"). Keyed by the decider's identity:
    deciders are long-lived module constants.
    """

    def __init__(self, max_streams: int = 10_000) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self._max = max_streams
        self._states: OrderedDict[tuple[int, str], Loaded[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def get[S](self, decider: Decider[S, Any, Any], stream_id: str) -> Loaded[S] | None:
        key = (id(decider), stream_id)
        found = self._states.get(key)
        if found is not None:
            self._states.move_to_end(key)
        return found

    def put[S](self, decider: Decider[S, Any, Any], stream_id: str, loaded: Loaded[S]) -> None:
        key = (id(decider), stream_id)
        current = self._states.get(key)
        if current is not None and current.version > loaded.version:
            return  # a concurrent command cached a later state already
        self._states[key] = loaded
        self._states.move_to_end(key)
        while len(self._states) > self._max:
            self._states.popitem(last=False)


async def load[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str, *, cache: StateCache | None = None
) -> Loaded[S]:
    """The aggregate's current state, the stream version it reflects and that version's global position.

    With a ``cache``: from the cached state on, if there is one, and the result is cached.
    """
    cached = cache.get(decider, stream_id) if cache is not None else None
    if cached is not None:
        loaded = await _catch_up(store, decider, stream_id, cached)
    else:
        loaded = await _load(store, decider, stream_id)
    if cache is not None and loaded.version >= 0:
        cache.put(decider, stream_id, loaded)
    return loaded


async def load_many[S, C, E: msgspec.Struct](
    store: EventStore,
    decider: Decider[S, C, E],
    stream_ids: Sequence[str],
    *,
    cache: StateCache | None = None,
) -> dict[str, Loaded[S]]:
    """Several aggregates of one type, by stream id: those in ``cache`` caught up in one round trip.

    The others are loaded as ``load`` does (concurrently), and cached.
    """
    cached = {stream_id: cache.get(decider, stream_id) if cache else None for stream_id in stream_ids}
    known = {stream_id: found for stream_id, found in cached.items() if found is not None}
    fresh = [stream_id for stream_id, found in cached.items() if found is None]
    loaded: dict[str, Loaded[S]] = {}
    if known:
        later = await store.read_streams({stream_id: found.version + 1 for stream_id, found in known.items()})
        for stream_id, found in known.items():
            loaded[stream_id] = _fold_after(decider, stream_id, found, later[stream_id])
            cache.put(decider, stream_id, loaded[stream_id])  # type: ignore[union-attr]
    loads = await asyncio.gather(*(load(store, decider, stream_id, cache=cache) for stream_id in fresh))
    loaded.update(zip(fresh, loads, strict=True))
    return loaded


async def _catch_up[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str, cached: Loaded[S]
) -> Loaded[S]:
    return _fold_after(decider, stream_id, cached, await store.read_stream(stream_id, cached.version + 1))


def _fold_after[S, C, E: msgspec.Struct](
    decider: Decider[S, C, E], stream_id: str, cached: Loaded[S], events: Sequence[RecordedEvent]
) -> Loaded[S]:
    state, version, position = cached.state, cached.version, cached.position
    for recorded in events:
        if recorded.version != version + 1:
            raise StreamTruncated(stream_id, version + 1, recorded.version)
        state = decider.evolve(state, recorded.data)  # type: ignore[arg-type]
        version, position = recorded.version, recorded.position
    return Loaded(state, version, position)


async def _load[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str
) -> Loaded[S]:
    state, version = decider.initial_state, -1
    if decider.snapshot_every:
        snapshot = await _load_snapshot(store, decider, stream_id)
        if snapshot is not None:
            version, state = snapshot
    # Read from the snapshot's own version: that event is folded in already, but it says
    # where the stream stands in the log when nothing came after it, in the same round trip.
    events = await store.read_stream(stream_id, max(version, 0))
    position = None
    if events and version >= 0 and events[0].version == version:
        position = events[0].position
        events = events[1:]
    if events and events[0].version != version + 1:
        raise StreamTruncated(stream_id, version + 1, events[0].version)
    if not events and version == -1:
        # No events: a new stream, or one whose events were all truncated away (it still has its
        # version). The two reads are separate statements, so a version here may also be a first
        # writer that created the stream in between: read again before calling it truncated, or
        # every command racing the creation of a stream would fail instead of deciding again.
        current = await store.stream_version(stream_id)
        if current != -1:
            events = await store.read_stream(stream_id, 0)
            if not events or events[0].version != 0:
                raise StreamTruncated(stream_id, 0, events[0].version if events else current + 1)
    for recorded in events:
        # The registry decoded the payload into a registered Struct; the decider's
        # event type is the union of those it registered.
        state = decider.evolve(state, recorded.data)  # type: ignore[arg-type]
        version, position = recorded.version, recorded.position
    return Loaded(state, version, position)


async def execute[S, C, E: msgspec.Struct](
    store: EventStore,
    decider: Decider[S, C, E],
    stream_id: str,
    command: C,
    *,
    metadata: Metadata | None = None,
    expected_version: int | None = None,
    new_stream: bool = False,
    claim: Claim | Call | Callable[[S, Sequence[E]], Claim | Call | None] | None = None,
    max_attempts: int = 3,
    cache: StateCache | None = None,
) -> Executed[E]:
    """Load, decide, append; on ``ConcurrencyError`` reload and decide again, up to ``max_attempts`` times.

    ``expected_version`` (an HTTP ``If-Match``) and ``new_stream`` (a stream id just made up,
    nothing loaded) are never retried. ``claim`` is a write made in the append's own statement
    (a ``Claim`` or a ``Call``), or a function of the state after the command and its events
    returning one. With a ``cache``, the first attempt decides on the cached state without reading
    the stream: the append's version check proves it current (see ``StateCache``).
    Domain errors from ``decide`` propagate.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    trusted = None
    if cache is not None and expected_version is None and not new_stream:
        trusted = cache.get(decider, stream_id)
    attempt = 0
    while True:
        if trusted is not None:
            loaded, trusted, trusting = trusted, None, True
        else:
            attempt += 1
            loaded, trusting = Loaded(decider.initial_state, -1, None), False
            if not new_stream:
                loaded = await load(store, decider, stream_id, cache=cache)
        try:
            return await _Attempt(store, decider, stream_id, loaded, expected_version, cache).run(
                command, metadata, claim, trusting=trusting
            )
        except _Stale:
            continue  # the cached state was behind the stream: decide on the stream as it is
        except ConcurrencyError:
            if expected_version is not None or new_stream or attempt == max_attempts:
                raise
            log.debug("%s moved on while deciding; retry %d/%d", stream_id, attempt, max_attempts - 1)
            await asyncio.sleep(random.uniform(0, _RETRY_JITTER_SECONDS * attempt))


class _Stale(Exception):
    """A cached state that cannot be trusted for this command: load the stream and decide again."""


@dataclass(frozen=True, slots=True)
class _Attempt[S, C, E: msgspec.Struct]:
    """One decide-and-append of ``execute`` on one loaded (or cached) state."""

    store: EventStore
    decider: Decider[S, C, E]
    stream_id: str
    loaded: Loaded[S]
    expected_version: int | None
    cache: StateCache | None

    async def run(
        self,
        command: C,
        metadata: Metadata | None,
        claim: Claim | Call | Callable[[S, Sequence[E]], Claim | Call | None] | None,
        *,
        trusting: bool,
    ) -> Executed[E]:
        loaded, decider = self.loaded, self.decider
        try:
            if decider.authorize is not None:
                decider.authorize(loaded.state, command)
            if self.expected_version is not None and loaded.version != self.expected_version:
                raise ConcurrencyError(self.stream_id, self.expected_version, loaded.version)
            decided = decider.decide(loaded.state, command)
            # The state after the command, folded at most once: for the claim, the snapshot and the cache.
            state_after = functools.cache(functools.partial(decider.fold, loaded.state, decided))
            this_claim = claim(state_after(), decided) if callable(claim) else claim
        except Exception as error:
            # A refusal on a cached state may be the cache's staleness: only the stream can tell.
            if trusting:
                raise _Stale from error
            raise
        if not decided and this_claim is None:
            if trusting:
                raise _Stale  # nothing to do, by a state no append has proved current
            return Executed(self.stream_id, loaded.version, loaded.position, [], [])
        new_events = [NewEvent(data=event, metadata=metadata or Metadata()) for event in decided]
        try:
            result = await self.store.append(self.stream_id, new_events, loaded.version, claim=this_claim)
        except ConcurrencyError:
            if trusting:
                raise _Stale from None
            raise
        if not decided:
            return Executed(self.stream_id, loaded.version, loaded.position, [], [])
        stream_id, version, position = self.stream_id, result.version, result.positions[-1]
        await _maybe_snapshot(self.store, decider, stream_id, loaded.version, version, state_after)
        if self.cache is not None:
            self.cache.put(decider, stream_id, Loaded(state_after(), version, position))
        return Executed(stream_id, version, position, decided, result.positions)


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
    state_after: Callable[[], S],
) -> None:
    """Snapshot the state at ``after`` if the append from ``before`` crossed a ``snapshot_every``."""
    every = decider.snapshot_every
    if not every or (before + 1) // every == (after + 1) // every:
        return
    new_state = state_after()
    if not isinstance(new_state, msgspec.Struct):
        return  # None: nothing worth caching (the type itself was checked with the Decider)
    try:
        await store.save_snapshot(stream_id, after, new_state)
    except EventStoreError as e:
        # The events are stored; a missing snapshot only makes the next load longer.
        log.warning("could not snapshot %s at version %d: %s", stream_id, after, e)
