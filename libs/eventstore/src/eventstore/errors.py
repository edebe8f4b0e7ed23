"""The store's own exceptions.

Driver errors never leave the package: the PostgreSQL adapter translates them into
these (``raise ... from e``) so callers handle one hierarchy whatever the backend.
Input errors also subclass ``ValueError`` so generic validation handlers catch them.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventstore.types import ExpectedVersion, LogPosition

__all__ = [
    "ClaimRefused",
    "ConcurrencyError",
    "DuplicateEventId",
    "EventDecodeError",
    "EventStoreError",
    "EventTooLarge",
    "InvalidExpectedVersion",
    "InvalidStreamId",
    "StoreUnavailable",
    "StreamDeleted",
    "StreamTruncated",
    "TransactionOrderConflict",
    "UnknownEventType",
    "UnstorableEvent",
]


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class ConcurrencyError(EventStoreError):
    """The stream was not at the expected version: another writer got there first.

    Retryable: reload the stream, decide again, append with the new version.
    """

    def __init__(self, stream_id: str, expected: ExpectedVersion, actual: int, detail: str = "") -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        message = f"stream {stream_id!r}: expected version {_describe(expected)}, actual version {actual}"
        super().__init__(f"{message} ({detail})" if detail else message)


class TransactionOrderConflict(ConcurrencyError):
    """The caller's transaction started writing before the stream's last append committed.

    Appending would put the new events *before* the stream's previous events in the
    global log order (which sorts by transaction id). Retry the whole transaction and
    append first in a combined transaction.
    """

    def __init__(self, stream_id: str, expected: ExpectedVersion, actual: int) -> None:
        super().__init__(
            stream_id,
            expected,
            actual,
            "a later transaction appended to this stream after the current transaction began writing; "
            "retry the transaction and append before other writes",
        )


class StreamDeleted(EventStoreError):
    """The stream carries a tombstone: it can be neither read nor appended to."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"stream {stream_id!r} is deleted")


class StreamTruncated(EventStoreError):
    """Events an aggregate needs were erased by ``truncate_before`` and no snapshot covers them."""

    def __init__(self, stream_id: str, needed_from: int, available_from: int) -> None:
        self.stream_id = stream_id
        self.needed_from = needed_from
        self.available_from = available_from
        super().__init__(
            f"stream {stream_id!r}: events from version {needed_from} are needed "
            f"but the stream was truncated before version {available_from}"
        )


class UnknownEventType(EventStoreError, LookupError):
    """An event class or stored type name that the registry does not know."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"event type {name!r} is not registered")


class EventDecodeError(EventStoreError):
    """A stored payload could not be turned into its registered type.

    ``log_position`` (when known) lets a subscriber dead-letter the event with its
    raw ``data`` and resume after it.
    """

    def __init__(
        self,
        event_type: str,
        schema_version: int,
        reason: str,
        *,
        data: bytes | str = b"",
        stream_id: str | None = None,
        log_position: LogPosition | None = None,
    ) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.reason = reason
        self.data = data
        self.stream_id = stream_id
        self.log_position = log_position
        where = f" in stream {stream_id!r} at {log_position}" if stream_id is not None else ""
        super().__init__(f"cannot decode {event_type!r} v{schema_version}{where}: {reason}")


class InvalidStreamId(EventStoreError, ValueError):
    """A stream id that is not ``{category}-{id}`` with a valid category and length."""

    def __init__(self, stream_id: object, reason: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"invalid stream id {stream_id!r}: {reason}")


class EventTooLarge(EventStoreError, ValueError):
    """An encoded event (payload plus metadata) exceeds the store's size limit."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.size = size
        self.limit = limit
        super().__init__(f"event {event_type!r} is {size} bytes encoded; the limit is {limit} bytes")


class UnstorableEvent(EventStoreError, ValueError):
    """An event whose JSON PostgreSQL cannot store: text holding a NUL character.

    jsonb refuses ``\\u0000``; the store refuses it up front, in every store, so the
    caller gets an input error instead of a driver error from the database.
    """

    def __init__(self, event_type: str, reason: str) -> None:
        self.event_type = event_type
        super().__init__(f"event {event_type!r} cannot be stored: {reason}")


class InvalidExpectedVersion(EventStoreError, ValueError):
    """An expected version that is neither a sentinel nor an int >= -1."""

    def __init__(self, expected: object) -> None:
        self.expected = expected
        super().__init__(
            f"invalid expected version {expected!r}: use an int >= -1, ANY, NO_STREAM or STREAM_EXISTS"
        )


class DuplicateEventId(EventStoreError):
    """An event id that is already stored somewhere else than this append would put it.

    Not an idempotent retry (that would be the same ids at the same versions of the
    same stream, which succeeds quietly).
    """

    def __init__(self, stream_id: str, event_ids: list[uuid.UUID] | None = None, detail: str = "") -> None:
        self.stream_id = stream_id
        self.event_ids = event_ids or []
        ids = ", ".join(str(i) for i in self.event_ids)
        message = f"appending to {stream_id!r}: event id(s) {ids or '?'} already stored elsewhere"
        super().__init__(f"{message}: {detail}" if detail else message)


class ClaimRefused(EventStoreError):
    """The key claimed with an append is taken (a live claim holds it), so the append was undone too.

    Not retried: the caller reads who holds the key (``read_claim``; for the command
    service, the first request's answer).
    """

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"appending to {stream_id!r}: the claim sent with the append was refused")


class StoreUnavailable(EventStoreError):
    """The database could not be reached, even after retrying."""


def _describe(expected: ExpectedVersion) -> str:
    if isinstance(expected, int):
        return "NO_STREAM (-1)" if expected == -1 else str(expected)
    return expected.name
