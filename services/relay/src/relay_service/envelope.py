"""The Kafka message for one recorded event: CloudEvents 1.0, binary content mode.

The record value is the event's JSON, the attributes are `ce_` headers (extension names
lower-case letters and digits), so any language reads the payload without the envelope.
A payload at its type's current version is sent as the stored bytes (checked on append,
not re-encoded); an older one is upcast and encoded again, and `ce_schemaversion` always
names the version sent.
"""

from __future__ import annotations

from datetime import UTC

import msgspec
from eventstore import EventDecodeError, EventRegistry, StoredEvent, category_of

__all__ = ["HEADERS", "KafkaMessage", "payload_of", "to_message", "topic_for"]

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

# Header name -> what it carries; the single list asyncapi.yaml is generated from.
HEADERS: dict[str, str] = {
    "ce_specversion": "CloudEvents spec version, always 1.0",
    "ce_id": "the event id (UUID); unique per event: deduplicate on it",
    "ce_source": "the publishing system: the relay's RELAY_SOURCE, `/fulfilment` by default",
    "ce_type": "the event type, e.g. OrderPlaced",
    "ce_time": "when the event was recorded, RFC 3339 UTC",
    "ce_subject": (
        "the stream id, also the record key: `order-<order uuid>`, `stock-<sku in lower case>` "
        "or `payment-<order uuid>`"
    ),
    "content-type": "application/json",
    "ce_streamversion": "the event's 0-based version in its stream; per-stream order",
    "ce_position": (
        "the event's position in the store's global log: increases with the log's order, never skips "
        "an event, may have holes (rolled-back appends, unpublished categories); compare it with a "
        "query's consistency token"
    ),
    "ce_schemaversion": (
        "the version of the payload's JSON Schema, a string of digits; the current version of the type"
    ),
    "ce_dataschema": "URI of the payload's JSON Schema: <RELAY_DATASCHEMA_BASE><type>.v<N>.json",
    "ce_correlationid": "the id shared by every message of one business flow (optional)",
    "ce_causationid": "the id of the message that caused this event (optional)",
    "ce_traceparent": "W3C trace context of the request that caused the event (optional)",
    "ce_actor": (
        "who caused the event: the authenticated subject (the token's `sub`) of the command (optional)"
    ),
}


class KafkaMessage(msgspec.Struct, frozen=True):
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def topic_for(stream_id: str, prefix: str) -> str:
    """One topic per aggregate category: `fulfilment.order` for `order-...` streams."""
    return f"{prefix}{category_of(stream_id)}"


_encoder = msgspec.json.Encoder()
_SPEC_VERSION = ("ce_specversion", SPEC_VERSION.encode())
_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())


def payload_of(event: StoredEvent, registry: EventRegistry) -> tuple[int, bytes]:
    """The schema version and JSON to publish for `event`: as stored if current, else upcast.

    Raises `UnknownEventType` for a type the registry does not know and
    `EventDecodeError` (naming the stream and log position) for a payload that
    cannot be upcast.
    """
    current = registry.current_version(event.event_type)
    if event.schema_version == current:
        return current, event.data
    try:
        upcast = registry.decode(event.event_type, event.schema_version, event.data)
    except EventDecodeError as e:
        raise EventDecodeError(
            event.event_type,
            event.schema_version,
            e.reason,
            data=event.data,
            stream_id=event.stream_id,
            log_position=event.log_position,
        ) from e
    return current, _encoder.encode(upcast)


def to_message(
    event: StoredEvent,
    registry: EventRegistry,
    *,
    source: str,
    topic_prefix: str,
    dataschema_base: str | None = None,
) -> KafkaMessage:
    """Build the Kafka record for `event`; the key is the stream id, so a stream stays on one partition.

    With `dataschema_base`, `ce_dataschema` names the schema of the version sent.
    """
    schema_version, value = payload_of(event, registry)
    recorded_at = event.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    headers: list[tuple[str, bytes]] = [
        _SPEC_VERSION,
        ("ce_id", str(event.event_id).encode()),
        ("ce_source", source.encode()),
        ("ce_type", event.event_type.encode()),
        ("ce_time", recorded_at.encode()),
        ("ce_subject", event.stream_id.encode()),
        _CONTENT_TYPE,
        ("ce_streamversion", str(event.version).encode()),
        ("ce_position", str(event.position).encode()),
        ("ce_schemaversion", str(schema_version).encode()),
    ]
    if dataschema_base is not None:
        headers.append(
            ("ce_dataschema", f"{dataschema_base}{event.event_type}.v{schema_version}.json".encode())
        )
    optional = {
        "ce_correlationid": event.metadata.correlation_id,
        "ce_causationid": event.metadata.causation_id,
        "ce_traceparent": event.metadata.traceparent,
        "ce_actor": event.metadata.actor,
    }
    headers.extend((name, value.encode()) for name, value in optional.items() if value)
    return KafkaMessage(
        topic=topic_for(event.stream_id, topic_prefix),
        key=event.stream_id.encode(),
        value=value,
        headers=headers,
    )
