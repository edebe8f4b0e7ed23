"""An event store on PostgreSQL: streams with optimistic concurrency, a gap-safe global log,
subscriptions, snapshots, upcasting and checkpoints, plus an in-memory twin for unit tests.

See ``docs/event-store.md``.
"""

from eventstore.aggregate import Decider, execute, load
from eventstore.connection import connect
from eventstore.errors import (
    ConcurrencyError,
    DuplicateEventId,
    EventDecodeError,
    EventStoreError,
    EventTooLarge,
    InvalidExpectedVersion,
    InvalidStreamId,
    StoreUnavailable,
    StreamDeleted,
    StreamTruncated,
    TransactionOrderConflict,
    UnknownEventType,
    UnstorableEvent,
)
from eventstore.memory import MemoryEventStore, MemoryStorage
from eventstore.migrations import migrate
from eventstore.postgres import PostgresEventStore
from eventstore.registry import EventRegistry
from eventstore.store import EventStore
from eventstore.streams import category_of, check_stream_id
from eventstore.types import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    LogPosition,
    Metadata,
    NewEvent,
    RecordedEvent,
    StoredEvent,
    StreamState,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "ConcurrencyError",
    "Decider",
    "DuplicateEventId",
    "EventDecodeError",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "InvalidExpectedVersion",
    "InvalidStreamId",
    "LogPosition",
    "MemoryEventStore",
    "MemoryStorage",
    "Metadata",
    "NewEvent",
    "PostgresEventStore",
    "RecordedEvent",
    "StoreUnavailable",
    "StoredEvent",
    "StreamDeleted",
    "StreamState",
    "StreamTruncated",
    "TransactionOrderConflict",
    "UnknownEventType",
    "UnstorableEvent",
    "category_of",
    "check_stream_id",
    "connect",
    "execute",
    "load",
    "migrate",
]
