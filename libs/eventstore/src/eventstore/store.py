"""The interface every event store implements (PostgreSQL and in-memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

import msgspec

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
)

__all__ = ["EventStore"]


class EventStore(Protocol):
    """Streams with optimistic concurrency, a gap-safe global log, checkpoints and snapshots.

    Versions are 0-based: a stream's first event has version 0, a stream without
    events is at version -1 (``NO_STREAM``).
    """

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

        Raises ``ConcurrencyError`` on a lost race; re-appending the same event ids at
        the same versions succeeds without storing them twice. ``connection``: an
        asyncpg connection inside the caller's transaction; ``claim``: a write the store
        makes in the append's statement, an idempotency key the append takes
        (``Claim``) or a call of the caller's own SQL function (``Call``) (both
        PostgreSQL only).
        """
        ...

    async def read_stream(
        self,
        stream_id: str,
        from_version: int | None = 0,
        *,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` on (backward: down from it; -1/None: the end)."""
        ...

    async def read_streams(self, starts: Mapping[str, int]) -> dict[str, list[RecordedEvent]]:
        """Several streams' events, each from its own start version on, in one round trip.

        Keyed by every stream id asked for (no events after its start, or no stream: an
        empty list). ``StreamDeleted`` if one of them is deleted.
        """
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version, -1 when it has no events."""
        ...

    async def read_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events of the global log after ``after``, in log order."""
        ...

    def subscribe_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        categories: Sequence[str] | None = None,
        checkpoint: str | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after`` (or after the stored ``checkpoint``), then new ones as they come."""
        ...

    async def save_checkpoint(
        self, name: str, position: LogPosition, *, connection: Connection | None = None
    ) -> None:
        """Store a subscriber's position, optionally inside the caller's transaction."""
        ...

    async def load_checkpoint(self, name: str) -> LogPosition | None:
        """The stored position of a subscriber, or None."""
        ...

    async def save_snapshot(self, stream_id: str, version: int, state: msgspec.Struct) -> None:
        """Store ``state`` as the stream's state after ``version`` (an older snapshot never wins)."""
        ...

    async def load_snapshot[S](self, stream_id: str, type_: type[S]) -> tuple[int, S] | None:
        """The stream's latest snapshot as (version, state), or None."""
        ...

    async def delete_stream(self, stream_id: str, expected_version: ExpectedVersion = ANY) -> None:
        """Tombstone the stream: reads and appends raise ``StreamDeleted`` from then on."""
        ...

    async def truncate_before(self, stream_id: str, version: int) -> None:
        """Erase the stream's events below ``version`` (from the stream and the global log)."""
        ...
