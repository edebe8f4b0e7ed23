"""The one shape of an event the projections see, whether it came from Kafka or from the store.

Live consumption reads CloudEvents records from Kafka (see `asyncapi.yaml`,
read strictly by `fulfilment.records`); rebuilds, replays and gap fills read the
event store. Both become a `ProjectedEvent`, so a projection cannot tell, and
need not. A record's claims are checked against the store (`stored_claims`)
before its position counts: the topic is not the source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec
from eventstore import EventRegistry, RecordedEvent, translated
from eventstore.types import Pool
from fulfilment.events import Event
from fulfilment.records import Envelope, Unreadable, read_envelope, read_payload

__all__ = [
    "ProjectedEvent",
    "StoredClaim",
    "UndecodableEvent",
    "claim_holds",
    "from_record",
    "from_recorded",
    "stored_claims",
]


class ProjectedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event with what projections need: its stream, version, global position and time."""

    stream_id: str
    version: int
    position: int
    event_id: str
    event_type: str
    recorded_at: datetime
    data: Event
    traceparent: str | None = None
    correlation_id: str | None = None


class UndecodableEvent(ValueError):
    """A message that is not a well-formed event this code knows: it goes to the dead-letter topic.

    `reason` is the class of the failure (`fulfilment.records.REASONS`, or `not-in-store`), the
    dead-letter counter's label; `envelope` is what the headers claim when they could be read.
    """

    def __init__(self, reason: str, detail: str, envelope: Envelope | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.envelope = envelope


def from_recorded(event: RecordedEvent) -> ProjectedEvent:
    """The projection's view of an event read from the store."""
    if not isinstance(event.data, Event):
        raise UndecodableEvent("unknown-type", f"{event.event_type} is not a fulfilment event")
    return ProjectedEvent(
        stream_id=event.stream_id,
        version=event.version,
        position=event.position,
        event_id=str(event.event_id),
        event_type=event.event_type,
        recorded_at=event.recorded_at,
        data=event.data,
        traceparent=event.metadata.traceparent,
        correlation_id=event.metadata.correlation_id,
    )


def from_record(
    registry: EventRegistry, key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes | None
) -> ProjectedEvent:
    """Decode one Kafka record of the relay (binary-mode CloudEvents) or raise `UndecodableEvent`."""
    try:
        envelope = read_envelope(key, headers)
    except Unreadable as error:
        raise UndecodableEvent(error.reason, error.detail) from error
    try:
        data = read_payload(registry, envelope, value)
    except Unreadable as error:
        raise UndecodableEvent(error.reason, error.detail, envelope) from error
    return ProjectedEvent(
        stream_id=envelope.stream_id,
        version=envelope.version,
        position=envelope.position,
        event_id=str(envelope.event_id),
        event_type=envelope.event_type,
        recorded_at=envelope.recorded_at,
        data=data,
        traceparent=envelope.traceparent,
        correlation_id=envelope.correlation_id,
    )


class StoredClaim(msgspec.Struct, frozen=True):
    """Where the store holds an event: its stream, version and global position."""

    stream_id: str
    version: int
    position: int


STORED_CLAIMS = """
SELECT event_id::text, stream_id, version, position FROM eventstore.events WHERE event_id = ANY($1::uuid[])
"""


async def stored_claims(pool: Pool, event_ids: Iterable[str]) -> dict[str, StoredClaim]:
    """Where the store holds each of `event_ids` (absent: not in the store), through its unique index.

    A record's `ce_position` is only a claim: a record written straight into a
    topic can claim any position, and marking it applied would move a projection's
    position (what readers' consistency tokens wait on) past events it has not applied.
    """
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    async with translated():
        rows = await pool.fetch(STORED_CLAIMS, ids)
    return {row[0]: StoredClaim(row[1], int(row[2]), int(row[3])) for row in rows}


def claim_holds(
    claims: dict[str, StoredClaim], event_id: str, stream_id: str, version: int, position: int
) -> bool:
    """Whether the store holds `event_id` as the record says: same stream, version and position."""
    return claims.get(event_id) == StoredClaim(stream_id, version, position)
