"""An event store on PostgreSQL: streams with optimistic concurrency, a gap-safe global log,
subscriptions, snapshots, upcasting, checkpoints and idempotency claims, plus an in-memory
twin for unit tests.

Also the store's operations that services share: a migration runner for any package's SQL
folder, leader election on an advisory lock, the lag of a checkpoint, and the driver
errors that mean "connection or timeout" with the context manager that translates them.

Importing ``eventstore`` does not import the driver: its core (deciders and ``execute``,
the registry, the types, errors, mapper and in-memory store) is plain Python, so a domain
package imports it freely. The PostgreSQL parts are imported from here all the same, and
load asyncpg the first time one of them is used.

See ``docs/event-store.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from eventstore.aggregate import Decider, Executed, Loaded, StateCache, execute, load, load_many
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
from eventstore.memory import MemoryEventStore, MemoryStorage
from eventstore.registry import EventRegistry
from eventstore.store import EventStore
from eventstore.streams import category_of, check_stream_id
from eventstore.types import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    Call,
    Claim,
    ExpectedVersion,
    LogPosition,
    Metadata,
    NewEvent,
    RecordedEvent,
    StoredClaim,
    StoredEvent,
    StreamState,
)

if TYPE_CHECKING:
    from eventstore.claims import purge_expired_claims, read_claim
    from eventstore.connection import TRANSIENT, TRANSIENT_ERRORS, connect, translated
    from eventstore.lag import Lag, checkpoint_lag
    from eventstore.leadership import leadership
    from eventstore.migrations import MigrationError, migrate
    from eventstore.postgres import PostgresEventStore

# The names that need asyncpg, and the module of each: imported on first use (PEP 562), so that
# `import fulfilment.deciders` (which imports `eventstore`) never loads the driver.
_POSTGRES_PARTS = {
    "PostgresEventStore": "eventstore.postgres",
    "TRANSIENT": "eventstore.connection",
    "TRANSIENT_ERRORS": "eventstore.connection",
    "connect": "eventstore.connection",
    "translated": "eventstore.connection",
    "Lag": "eventstore.lag",
    "checkpoint_lag": "eventstore.lag",
    "leadership": "eventstore.leadership",
    "MigrationError": "eventstore.migrations",
    "migrate": "eventstore.migrations",
    "purge_expired_claims": "eventstore.claims",
    "read_claim": "eventstore.claims",
}


def __getattr__(name: str) -> object:
    module = _POSTGRES_PARTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "TRANSIENT",
    "TRANSIENT_ERRORS",
    "AppendResult",
    "Call",
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
    "StoredClaim",
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
    "purge_expired_claims",
    "read_claim",
    "translated",
]
