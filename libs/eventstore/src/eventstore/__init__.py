"""An event store on PostgreSQL: streams with optimistic concurrency, a gap-safe global log,
subscriptions, snapshots, upcasting and checkpoints, plus an in-memory twin for unit tests.

Also the store's operations that services share: a migration runner for any package's SQL
folder, leader election on an advisory lock, the lag of a checkpoint, and the driver
errors that mean "connection or timeout" with the context manager that translates them.

See ``docs/event-store.md``.
"""

from eventstore.aggregate import Decider, Executed, Loaded, StateCache, execute, load, load_many
from eventstore.connection import TRANSIENT, TRANSIENT_ERRORS, connect, translated
from eventstore.errors import (
    ClaimRefused,
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
from eventstore.lag import Lag, checkpoint_lag
from eventstore.leadership import leadership
from eventstore.memory import MemoryEventStore, MemoryStorage
from eventstore.migrations import MigrationError, migrate
from eventstore.postgres import PostgresEventStore
from eventstore.registry import EventRegistry
from eventstore.store import EventStore
from eventstore.streams import category_of, check_stream_id
from eventstore.types import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    Claim,
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
    "TRANSIENT",
    "TRANSIENT_ERRORS",
    "AppendResult",
    "Claim",
    "ClaimRefused",
    "ConcurrencyError",
    "Decider",
    "DuplicateEventId",
    "EventDecodeError",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "Executed",
    "ExpectedVersion",
    "InvalidExpectedVersion",
    "InvalidStreamId",
    "Lag",
    "Loaded",
    "LogPosition",
    "MemoryEventStore",
    "MemoryStorage",
    "Metadata",
    "MigrationError",
    "NewEvent",
    "PostgresEventStore",
    "RecordedEvent",
    "StateCache",
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
    "checkpoint_lag",
    "connect",
    "execute",
    "leadership",
    "load",
    "load_many",
    "migrate",
    "translated",
]
