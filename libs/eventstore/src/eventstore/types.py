"""The values that cross the store's interface: what you append, what you read back.

Free of the driver: the domain imports these (through ``eventstore``) without asyncpg.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import msgspec

from eventstore.errors import InvalidExpectedVersion

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "Call",
    "Claim",
    "Connection",
    "ExpectedVersion",
    "LogPosition",
    "Metadata",
    "NewEvent",
    "Pool",
    "RecordedEvent",
    "StoredClaim",
    "StoredEvent",
    "StreamState",
    "Tracer",
    "check_expected_version",
    "check_limit",
    "expectation_met",
]

# An asyncpg connection the caller holds, typically inside ``async with conn.transaction()``.
# The alias is evaluated only when a type checker (or code) asks for it, so asyncpg is not imported here.
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


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An idempotency key that an append takes, written by the store in the append's own statement.

    ``key`` is unique within ``scope`` (the command service: the caller's subject).
    The store records the key with ``fingerprint`` (what the key was used for, the
    caller's to define and compare) and where the append left its stream, until
    ``ttl`` has passed. A key whose live record exists is taken: the claim is refused,
    nothing of the append is kept and ``ClaimRefused`` is raised. An expired record
    is replaced. Read a record back with ``read_claim`` (PostgreSQL only).
    """

    scope: str
    key: str
    fingerprint: bytes
    ttl: timedelta


# A function named ``schema.name``: lower-case SQL identifiers only, so the name can be quoted as it is
# and never carries anything but a name into the statement.
_QUALIFIED_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}")


class Call(msgspec.Struct, frozen=True):
    """A call of a SQL function its caller owns and migrated, run by the store in the append's own statement.

    The store calls ``function(stream_id, version, position, *args)`` only when the append
    writes; false or NULL refuses the append (``ClaimRefused``). ``function`` is
    ``schema.name`` in lower case, checked here and quoted by the store, so no SQL text of
    the caller's goes into the statement. See ``docs/event-store.md``, "Calls".
    """

    function: str
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not _QUALIFIED_NAME.fullmatch(self.function):
            raise ValueError(f"a Call names its function as schema.name in lower case, got {self.function!r}")


class StoredClaim(msgspec.Struct, frozen=True, kw_only=True):
    """A live claim as the store recorded it: the key's fingerprint and where its append left the stream.

    ``position`` is the global position of the stream's last event after the append
    (None for a claim on a stream without events); ``event_types`` names the events
    the append wrote (none for a claim made by an append of no events).
    """

    scope: str
    key: str
    fingerprint: bytes
    stream_id: str
    version: int
    position: int | None
    event_types: list[str]
    expires_at: datetime


class Tracer(Protocol):
    """What the store needs of an OpenTelemetry ``Tracer`` (without depending on OpenTelemetry)."""

    def start_as_current_span(
        self, name: str, *, attributes: Mapping[str, str | int]
    ) -> AbstractContextManager[Any]: ...
