"""The one shape of an event the projections see, whether it came from Kafka or from the store.

Live consumption reads CloudEvents records from Kafka (see `asyncapi.yaml`);
rebuilds, replays and gap fills read the event store. Both become a
`ProjectedEvent`, so a projection cannot tell, and need not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from eventstore import EventRegistry, EventStoreError, RecordedEvent
from fulfilment.events import Event

__all__ = ["ProjectedEvent", "UndecodableEvent", "from_headers", "from_recorded"]


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
    """A message that is not a well-formed event this code knows: it goes to the dead-letter topic."""


def from_recorded(event: RecordedEvent) -> ProjectedEvent:
    """The projection's view of an event read from the store."""
    if not isinstance(event.data, Event):
        raise UndecodableEvent(f"{event.event_type} is not a fulfilment event")
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


def from_headers(
    registry: EventRegistry, headers: Sequence[tuple[str, bytes]], value: bytes | None
) -> ProjectedEvent:
    """Decode one Kafka record of the relay (binary-mode CloudEvents) or raise `UndecodableEvent`."""
    attributes = {name: raw.decode("utf-8", "replace") for name, raw in headers}
    try:
        event_type = attributes["ce_type"]
        schema_version = int(attributes["ce_schemaversion"])
        data = registry.decode(event_type, schema_version, value or b"")
        recorded_at = datetime.fromisoformat(attributes["ce_time"].replace("Z", "+00:00")).astimezone(UTC)
        stream_id = attributes["ce_subject"]
        version = int(attributes["ce_streamversion"])
        position = int(attributes["ce_position"])
        event_id = attributes["ce_id"]
    except KeyError as error:
        raise UndecodableEvent(f"missing header {error.args[0]}") from error
    except (ValueError, EventStoreError) as error:
        raise UndecodableEvent(f"{type(error).__name__}: {error}") from error
    if not isinstance(data, Event):
        raise UndecodableEvent(f"{event_type} is not a fulfilment event")
    return ProjectedEvent(
        stream_id=stream_id,
        version=version,
        position=position,
        event_id=event_id,
        event_type=event_type,
        recorded_at=recorded_at,
        data=data,
        traceparent=attributes.get("ce_traceparent"),
        correlation_id=attributes.get("ce_correlationid"),
    )
