"""An in-memory event store with the same behaviour as the PostgreSQL one, for fast unit tests.

Events are kept encoded, exactly as the database keeps them, so encoding, size limits,
upcasting and decode errors behave the same. Everything runs on one event loop and
each operation completes without awaiting in between, so each is atomic.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from eventstore.errors import ConcurrencyError, DuplicateEventId, EventDecodeError, StreamDeleted
from eventstore.mapper import DEFAULT_MAX_EVENT_BYTES, EncodedEvent, decode_record, encode_events
from eventstore.registry import EventRegistry
from eventstore.streams import category_of, check_stream_id
from eventstore.types import (
    ANY,
    AppendResult,
    Call,
    Claim,
    Connection,
    ExpectedVersion,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StreamState,
    check_expected_version,
    check_limit,
    expectation_met,
)

__all__ = ["MemoryEventStore", "MemoryStorage"]


@dataclass(frozen=True, slots=True)
class _Row:
    stream_id: str
    category: str
    version: int
    position: int
    transaction_id: int
    event: EncodedEvent
    recorded_at: datetime


@dataclass(slots=True)
class _Stream:
    version: int = -1
    first_version: int = 0
    deleted: bool = False
    rows: list[_Row] = field(default_factory=list)


@dataclass
class MemoryStorage:
    """The data behind one or more ``MemoryEventStore`` views (e.g. with different registries)."""

    streams: dict[str, _Stream] = field(default_factory=dict)
    log: list[_Row] = field(default_factory=list)
    event_ids: dict[uuid.UUID, _Row] = field(default_factory=dict)
    checkpoints: dict[str, LogPosition] = field(default_factory=dict)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    positions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    transactions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def announce(self) -> None:
        """Wake every subscriber waiting for new events."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class MemoryEventStore:
    """The ``EventStore`` interface over Python lists; ``connection`` arguments are ignored."""

    def __init__(
        self,
        registry: EventRegistry,
        *,
        storage: MemoryStorage | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.registry = registry
        self.storage = storage if storage is not None else MemoryStorage()
        self.max_event_bytes = max_event_bytes

    async def close(self) -> None:
        """Nothing to release; here so both stores can be closed the same way."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | msgspec.Struct],
        expected_version: ExpectedVersion = ANY,
        *,
        connection: Connection | None = None,
        claim: Claim | Call | None = None,
    ) -> AppendResult:
        """Append ``events`` atomically if the stream is at ``expected_version``.

        Claims and calls are written by the PostgreSQL store only (with ``read_claim`` to
        read claims back): this store says so rather than drop one.
        """
        if claim is not None:
            raise NotImplementedError(
                "claims and calls are written by the PostgreSQL store: append with one there"
            )
        category = category_of(stream_id)
        check_expected_version(expected_version)
        encoded = encode_events(self.registry, events, self.max_event_bytes)
        stream = self.storage.streams.get(stream_id) or _Stream()
        if stream.deleted:
            raise StreamDeleted(stream_id)
        retried = self._previous_append(stream_id, stream, encoded, expected_version)
        if retried is not None:
            return retried
        if not expectation_met(expected_version, stream.version):
            raise ConcurrencyError(stream_id, expected_version, stream.version)
        if not encoded:
            return AppendResult(stream_id, stream.version, [])
        duplicates = [e.event_id for e in encoded if e.event_id in self.storage.event_ids]
        if duplicates or len({e.event_id for e in encoded}) != len(encoded):
            raise DuplicateEventId(stream_id, duplicates or [e.event_id for e in encoded])
        self.storage.streams[stream_id] = stream
        transaction_id = next(self.storage.transactions)
        now = datetime.now(UTC)
        for event in encoded:
            stream.version += 1
            row = _Row(
                stream_id, category, stream.version, next(self.storage.positions), transaction_id, event, now
            )
            stream.rows.append(row)
            self.storage.log.append(row)
            self.storage.event_ids[event.event_id] = row
        self.storage.announce()
        return AppendResult(stream_id, stream.version, [row.position for row in stream.rows[-len(encoded) :]])

    def _previous_append(
        self, stream_id: str, stream: _Stream, encoded: list[EncodedEvent], expected: ExpectedVersion
    ) -> AppendResult | None:
        """The earlier result if these exact events were already appended (an idempotent retry)."""
        if not encoded:
            return None
        stored = [self.storage.event_ids.get(e.event_id) for e in encoded]
        if isinstance(expected, int) and expected != stream.version:
            first = expected + 1
        elif isinstance(expected, StreamState) and stored[0] is not None:
            first = stored[0].version
        else:
            return None
        same_place = all(
            row is not None and row.stream_id == stream_id and row.version == first + i
            for i, row in enumerate(stored)
        )
        if not same_place:
            if isinstance(expected, StreamState) and any(row is not None for row in stored):
                found = [e.event_id for e, row in zip(encoded, stored, strict=True) if row is not None]
                raise DuplicateEventId(stream_id, found)
            return None
        return AppendResult(stream_id, first + len(encoded) - 1, [row.position for row in stored if row])

    async def read_stream(
        self,
        stream_id: str,
        from_version: int | None = 0,
        *,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` on (backward: down from it; -1/None: the end)."""
        check_stream_id(stream_id)
        check_limit(limit)
        if not backward and from_version is not None and from_version < 0:
            raise ValueError(f"from_version must be >= 0 when reading forward, got {from_version}")
        stream = self._live_stream(stream_id)
        if stream is None:
            return []
        if backward:
            top = stream.version if from_version is None or from_version < 0 else from_version
            rows = [row for row in reversed(stream.rows) if row.version <= top]
        else:
            start = from_version or 0
            rows = [row for row in stream.rows if row.version >= start]
        return [self._decode(row) for row in rows[:limit]]

    async def read_streams(self, starts: Mapping[str, int]) -> dict[str, list[RecordedEvent]]:
        """Several streams' events, each from its own start version on."""
        for stream_id, start in starts.items():
            check_stream_id(stream_id)
            if start < 0:
                raise ValueError(f"from_version must be >= 0, got {start} for {stream_id!r}")
        return {stream_id: await self.read_stream(stream_id, start) for stream_id, start in starts.items()}

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version, -1 when it has no events."""
        check_stream_id(stream_id)
        stream = self._live_stream(stream_id)
        return -1 if stream is None else stream.version

    async def read_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events of the global log after ``after``, in log order."""
        check_limit(limit)
        wanted = None if categories is None else frozenset(categories)
        log = self.storage.log
        start = bisect.bisect_right(log, (after.transaction_id, after.position), key=_log_order)
        page = []
        for row in itertools.islice(log, start, None):
            if wanted is not None and row.category not in wanted:
                continue
            page.append(self._decode(row))
            if len(page) >= limit:
                break
        return page

    async def subscribe_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        categories: Sequence[str] | None = None,
        checkpoint: str | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after`` (or the stored ``checkpoint``), then new ones as they come."""
        if checkpoint is not None:
            after = await self.load_checkpoint(checkpoint) or after
        while True:
            changed = self.storage.changed
            page = await self.read_all(after, limit=batch_size, categories=categories)
            for event in page:
                after = event.log_position
                yield event
            if len(page) < batch_size:
                # The poll timeout mirrors the PostgreSQL store; here appends always wake us.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll_interval)

    async def save_checkpoint(
        self, name: str, position: LogPosition, *, connection: Connection | None = None
    ) -> None:
        """Store a subscriber's position."""
        self.storage.checkpoints[name] = position

    async def load_checkpoint(self, name: str) -> LogPosition | None:
        """The stored position of a subscriber, or None."""
        return self.storage.checkpoints.get(name)

    async def save_snapshot(self, stream_id: str, version: int, state: msgspec.Struct) -> None:
        """Store ``state`` as the stream's state after ``version`` (an older snapshot never wins)."""
        check_stream_id(stream_id)
        current = self.storage.snapshots.get(stream_id)
        if current is None or current[0] < version:
            self.storage.snapshots[stream_id] = (version, msgspec.json.encode(state))

    async def load_snapshot[S](self, stream_id: str, type_: type[S]) -> tuple[int, S] | None:
        """The stream's latest snapshot as (version, state), or None."""
        check_stream_id(stream_id)
        stored = self.storage.snapshots.get(stream_id)
        if stored is None:
            return None
        version, data = stored
        try:
            return version, msgspec.json.decode(data, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            name = f"snapshot:{type_.__name__}"
            raise EventDecodeError(name, 0, str(e), data=data, stream_id=stream_id) from e

    async def delete_stream(self, stream_id: str, expected_version: ExpectedVersion = ANY) -> None:
        """Tombstone the stream; deleting a deleted stream is a no-op."""
        check_stream_id(stream_id)
        check_expected_version(expected_version)
        stream = self.storage.streams.get(stream_id)
        if stream is not None and stream.deleted:
            return
        version = -1 if stream is None else stream.version
        if not expectation_met(expected_version, version):
            raise ConcurrencyError(stream_id, expected_version, version)
        # Tombstoning a stream that never existed reserves the id: it can never be created.
        self.storage.streams.setdefault(stream_id, _Stream()).deleted = True
        self.storage.snapshots.pop(stream_id, None)

    async def truncate_before(self, stream_id: str, version: int) -> None:
        """Erase the stream's events below ``version`` from the stream and the global log."""
        check_stream_id(stream_id)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"truncate_before needs a version >= 0, got {version!r}")
        stream = self.storage.streams.get(stream_id)
        if stream is None:
            return
        stream.first_version = max(stream.first_version, min(version, stream.version + 1))
        erased = [row for row in stream.rows if row.version < stream.first_version]
        if not erased:
            return
        stream.rows = [row for row in stream.rows if row.version >= stream.first_version]
        gone = {id(row) for row in erased}
        self.storage.log = [row for row in self.storage.log if id(row) not in gone]
        for row in erased:
            del self.storage.event_ids[row.event.event_id]

    def _live_stream(self, stream_id: str) -> _Stream | None:
        stream = self.storage.streams.get(stream_id)
        if stream is not None and stream.deleted:
            raise StreamDeleted(stream_id)
        return stream

    def _decode(self, row: _Row) -> RecordedEvent:
        return decode_record(
            self.registry,
            stream_id=row.stream_id,
            version=row.version,
            position=row.position,
            transaction_id=row.transaction_id,
            event_id=row.event.event_id,
            event_type=row.event.event_type,
            schema_version=row.event.schema_version,
            data=row.event.data,
            metadata=row.event.metadata,
            recorded_at=row.recorded_at,
        )


def _log_order(row: _Row) -> tuple[int, int]:
    return row.transaction_id, row.position
