"""An event store on PostgreSQL (gap-safe global log, optimistic concurrency, claims), an in-memory twin.

Plus the store operations services share: migrations, leader election, checkpoint lag,
driver-error translation. Importing ``eventstore`` does not import asyncpg (a domain
package imports it freely): the PostgreSQL parts load it on first use.
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
