"""The values that cross the store's interface: what you append, what you read back."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any, ClassVar, Final

import asyncpg
import asyncpg.pool
import msgspec

from eventstore.errors import InvalidExpectedVersion

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "Claim",
    "Connection",
    "ExpectedVersion",
    "LogPosition",
    "Metadata",
    "NewEvent",
    "Pool",
    "RecordedEvent",
    "StoredEvent",
    "StreamState",
    "check_expected_version",
    "check_limit",
    "expectation_met",
]

# An asyncpg connection the caller holds, typically inside ``async with conn.transaction()``.
type Connection = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]
# The pool `eventstore.connect` opens: what services hand the store and their own queries.
type Pool = asyncpg.Pool[Any]


class StreamState(enum.Enum):
    """Expected versions that name a state of the stream rather than a number."""

    ANY = "any"
    STREAM_EXISTS = "stream_exists"


ANY: Final = StreamState.ANY
STREAM_EXISTS: Final = StreamState.STREAM_EXISTS
# Versions are 0-based, so a stream without events is at version -1.
NO_STREAM: Final = -1

type ExpectedVersion = int | StreamState


def check_expected_version(expected: object) -> None:
    """Raise ``InvalidExpectedVersion`` unless ``expected`` is a sentinel or an int >= -1."""
    if isinstance(expected, StreamState):
        return
    # bool is an int subclass; ``expected_version=True`` is a bug, not version 1.
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < NO_STREAM:
        raise InvalidExpectedVersion(expected)


def check_limit(limit: object) -> None:
    """Raise ``ValueError`` unless ``limit`` is None or a positive int."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")


def expectation_met(expected: ExpectedVersion, actual: int) -> bool:
    """Whether a live stream at version ``actual`` satisfies ``expected``."""
    if expected is StreamState.ANY:
        return True
    if expected is StreamState.STREAM_EXISTS:
        return actual >= 0
    return expected == actual


class LogPosition(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A place in the global log, ordered by (transaction_id, position).

    Positions alone are not a safe cursor: a sequence value is taken at insert time but
    becomes visible at commit time, so positions appear out of order. The writing
    transaction's id orders the log instead (see ``docs/event-store.md``).
    """

    transaction_id: int
    position: int

    START: ClassVar[LogPosition]

    def __str__(self) -> str:
        return f"{self.transaction_id}/{self.position}"


LogPosition.START = LogPosition(0, 0)


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Context that travels with an event: who caused it and which trace it belongs to."""

    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    actor: str | None = None


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append: a registered event Struct plus its id and metadata.

    Keep the same ``NewEvent`` (same ``event_id``) when retrying an append: the store
    recognises the retry and succeeds without storing the events twice.
    """

    data: msgspec.Struct
    event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    metadata: Metadata = Metadata()


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: ``data`` is decoded into the current registered type."""

    stream_id: str
    version: int
    position: int
    transaction_id: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: msgspec.Struct
    metadata: Metadata
    recorded_at: datetime

    @property
    def log_position(self) -> LogPosition:
        """This event's place in the global log; pass it as ``after`` to resume."""
        return LogPosition(self.transaction_id, self.position)


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored, its payload left as the JSON the store holds (not decoded).

    For code that forwards events rather than acting on them, such as the Kafka relay:
    a payload at the registry's current ``schema_version`` can be passed on as it is,
    and only older ones need ``EventRegistry.decode`` (which upcasts).
    """

    stream_id: str
    version: int
    position: int
    transaction_id: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: bytes
    metadata: Metadata
    recorded_at: datetime

    @property
    def log_position(self) -> LogPosition:
        """This event's place in the global log; pass it as ``after`` to resume."""
        return LogPosition(self.transaction_id, self.position)


class AppendResult(msgspec.Struct, frozen=True):
    """The stream's version after an append and the global positions of its events."""

    stream_id: str
    version: int
    positions: list[int]


class Claim(msgspec.Struct, frozen=True):
    """A write that stands or falls with an append, sent in the append's own statement (PostgreSQL only).

    ``sql`` is one data-modifying statement ending in ``RETURNING``, its parameters
    ``$1``..``$n`` bound to ``args`` (cast them: the statement is planned as a whole).
    It may read the one-row relation ``appended (stream_id text, version bigint,
    position bigint, event_types text[])``: the stream after the append, ``position``
    being its last event's global position. With no events to append it is the
    stream as it stands, share-locked until the claim commits.

    When the statement returns no row the claim is refused: nothing of the append is
    kept and ``ClaimRefused`` is raised. The command service claims its idempotency
    key this way, ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE <expired> RETURNING 1``:
    events and key are written in one round trip, or neither is.
    """

    sql: str
    args: tuple[Any, ...] = ()
