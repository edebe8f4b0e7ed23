"""Turning domain events into stored records and back, the same way for every store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from eventstore.errors import EventDecodeError, EventTooLarge, UnstorableEvent
from eventstore.registry import EventRegistry
from eventstore.types import LogPosition, Metadata, NewEvent, RecordedEvent, StoredEvent

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EncodedEvent",
    "decode_metadata",
    "decode_record",
    "decode_rows",
    "encode_events",
    "stored_rows",
]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

_EMPTY_METADATA = Metadata()
_EMPTY_METADATA_JSON = b"{}"
_metadata_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(Metadata)


class EncodedEvent(NamedTuple):
    """An event ready to store: its id, type name, schema version and JSON."""

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: bytes
    metadata: bytes


# How msgspec writes a NUL character; jsonb cannot hold it.
_NUL = b"\\u0000"


def encode_events(
    registry: EventRegistry,
    events: Sequence[NewEvent | msgspec.Struct],
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> list[EncodedEvent]:
    """Encode events for appending; bare Structs get a fresh id and empty metadata.

    Raises ``UnknownEventType`` for unregistered classes and ``EventTooLarge`` when
    payload plus metadata exceed ``max_event_bytes``.
    """
    encoded = []
    for event in events:
        new = event if isinstance(event, NewEvent) else NewEvent(data=event)
        name, version, data = registry.encode(new.data)
        if new.metadata == _EMPTY_METADATA:
            metadata = _EMPTY_METADATA_JSON
        else:
            metadata = _metadata_encoder.encode(new.metadata)
        size = len(data) + len(metadata)
        if size > max_event_bytes:
            raise EventTooLarge(name, size, max_event_bytes)
        if _NUL in data or _NUL in metadata:
            raise UnstorableEvent(name, "its text contains a NUL character (\\u0000)")
        encoded.append(EncodedEvent(new.event_id, name, version, data, metadata))
    return encoded


def decode_metadata(metadata: bytes | str) -> Metadata:
    """Decode stored metadata; the common empty case shares one instance."""
    if metadata in ("{}", b"{}"):
        return _EMPTY_METADATA
    return _metadata_decoder.decode(metadata)


def decode_record(
    registry: EventRegistry,
    *,
    stream_id: str,
    version: int,
    position: int,
    transaction_id: int,
    event_id: uuid.UUID,
    event_type: str,
    schema_version: int,
    data: bytes | str,
    metadata: bytes | str,
    recorded_at: datetime,
) -> RecordedEvent:
    """Build a ``RecordedEvent`` from stored columns, decoding and upcasting its payload.

    Decode errors name the stream and log position so a subscriber can dead-letter the
    event and resume after it.
    """
    try:
        decoded = registry.decode(event_type, schema_version, data)
        meta = decode_metadata(metadata)
    except EventDecodeError as e:
        raise EventDecodeError(
            event_type,
            schema_version,
            e.reason,
            data=data,
            stream_id=stream_id,
            log_position=LogPosition(transaction_id, position),
        ) from e
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise EventDecodeError(
            event_type,
            schema_version,
            f"metadata: {e}",
            data=data,
            stream_id=stream_id,
            log_position=LogPosition(transaction_id, position),
        ) from e
    return RecordedEvent(
        stream_id=stream_id,
        version=version,
        position=position,
        transaction_id=transaction_id,
        event_id=event_id,
        event_type=event_type,
        schema_version=schema_version,
        data=decoded,
        metadata=meta,
        recorded_at=recorded_at,
    )


def decode_rows(registry: EventRegistry, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
    """Decode many stored rows: ``decode_record`` without its per-row overhead.

    Each row is one leading column this function ignores, then stream_id, version,
    position, transaction_id, event_id, event_type, schema_version, data, metadata,
    recorded_at. Rows whose stream_id is NULL (the empty side of an outer join) are
    skipped. On the read path this loop is most of the client's work, hence the
    plain locals.
    """
    decoders: dict[tuple[str, int], Callable[[bytes | str], msgspec.Struct]] = {}
    decode_meta = _metadata_decoder.decode
    empty = _EMPTY_METADATA
    events: list[RecordedEvent] = []
    append = events.append
    for row in rows:
        _, stream_id, version, position, xid, event_id, event_type, schema_version, data, metadata, at = row
        if stream_id is None:
            continue
        try:
            decode = decoders.get((event_type, schema_version))
            if decode is None:
                decode = registry.decoder_for(event_type, schema_version)
                decoders[event_type, schema_version] = decode
            payload = decode(data)
            meta = empty if metadata == "{}" else decode_meta(metadata)
        except (msgspec.DecodeError, msgspec.ValidationError, EventDecodeError):
            # Let the careful path say precisely what is wrong, and where.
            decode_record(
                registry,
                stream_id=stream_id,
                version=version,
                position=position,
                transaction_id=xid,
                event_id=event_id,
                event_type=event_type,
                schema_version=schema_version,
                data=data,
                metadata=metadata,
                recorded_at=at,
            )
            raise
        append(
            RecordedEvent(
                stream_id=stream_id,
                version=version,
                position=position,
                transaction_id=xid,
                event_id=event_id,
                event_type=event_type,
                schema_version=schema_version,
                data=payload,
                metadata=meta,
                recorded_at=at,
            )
        )
    return events


def stored_rows(rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
    """Stored rows (laid out as for ``decode_rows``) with their payloads left as JSON bytes.

    Only the metadata is decoded. A payload is whatever PostgreSQL returns for the
    ``jsonb`` column: the same JSON value as appended, in jsonb's normalised text.
    """
    decode_meta = _metadata_decoder.decode
    empty = _EMPTY_METADATA
    events: list[StoredEvent] = []
    for row in rows:
        _, stream_id, version, position, xid, event_id, event_type, schema_version, data, metadata, at = row
        if stream_id is None:
            continue
        events.append(
            StoredEvent(
                stream_id=stream_id,
                version=version,
                position=position,
                transaction_id=xid,
                event_id=event_id,
                event_type=event_type,
                schema_version=schema_version,
                data=data.encode() if isinstance(data, str) else data,
                metadata=empty if metadata == "{}" else decode_meta(metadata),
                recorded_at=at,
            )
        )
    return events
