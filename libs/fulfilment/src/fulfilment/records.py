"""Reading one Kafka record of the suite's topics (binary-mode CloudEvents, `asyncapi.yaml`), strictly.

A record that cannot be read goes to the dead-letter topic under one reason class (the
`reason` label of its counter): `bad-headers`, `bad-position`, `bad-key`, `unknown-type`,
`unknown-schema-version`, `bad-bytes`, `bad-json`, `wrong-shape` (each defined in
`docs/projector.md`, "Failures"). Reading is split in two so a consumer can check the
envelope's claims (its position in the log) whatever became of the payload.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import msgspec
from eventstore import EventDecodeError, EventRegistry, UnknownEventType

from fulfilment.events import Event

__all__ = ["REASONS", "Envelope", "Unreadable", "read_envelope", "read_payload"]

REASONS: Final = (
    "bad-headers",
    "bad-position",
    "bad-key",
    "unknown-type",
    "unknown-schema-version",
    "bad-bytes",
    "bad-json",
    "wrong-shape",
)

_REQUIRED = ("ce_specversion", "ce_id", "ce_type", "ce_time", "ce_subject", "ce_streamversion")
_DECIMAL = re.compile(r"[0-9]{1,19}")  # ASCII only (re's [0-9], not \d); 19 digits hold any bigint
_BIGINT_MAX = 2**63 - 1


class Unreadable(ValueError):
    """A record a consumer cannot read: `reason` is its class (one of `REASONS`), `detail` says what."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What a record's headers and key claim about the event it carries."""

    event_id: UUID
    event_type: str
    schema_version: int
    stream_id: str
    version: int
    position: int
    recorded_at: datetime
    traceparent: str | None
    correlation_id: str | None


def read_envelope(key: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> Envelope:
    """The envelope of one record, or `Unreadable` (`bad-headers`, `bad-position`, `bad-key`)."""
    text = _ce_headers(headers)
    missing = [name for name in _REQUIRED if name not in text]
    if missing:
        raise Unreadable("bad-headers", f"missing {', '.join(missing)}")
    if text["ce_specversion"] != "1.0":
        raise Unreadable("bad-headers", f"ce_specversion {text['ce_specversion']!r} is not 1.0")
    try:
        event_id = UUID(text["ce_id"])
    except ValueError:
        raise Unreadable("bad-headers", f"ce_id {text['ce_id']!r} is not a UUID") from None
    stream_id = text["ce_subject"]
    if not stream_id or "-" not in stream_id:
        raise Unreadable("bad-headers", f"ce_subject {stream_id!r} is not a stream id")
    if not text["ce_type"]:
        raise Unreadable("bad-headers", "ce_type is empty")
    position_text = text.get("ce_position")
    if position_text is None:
        raise Unreadable("bad-position", "missing ce_position")
    position = _decimal(position_text)
    if position is None or position < 1:
        raise Unreadable("bad-position", f"ce_position {position_text!r} is not a position")
    version = _decimal(text["ce_streamversion"])
    if version is None:
        raise Unreadable("bad-headers", f"ce_streamversion {text['ce_streamversion']!r} is not a decimal")
    schema_version = _decimal(text.get("ce_schemaversion", ""))
    if schema_version is None:
        raise Unreadable("bad-headers", f"ce_schemaversion {text.get('ce_schemaversion')!r} is not a decimal")
    try:
        recorded_at = datetime.fromisoformat(text["ce_time"])
    except ValueError:
        raise Unreadable("bad-headers", f"ce_time {text['ce_time']!r} is not an RFC 3339 time") from None
    if recorded_at.tzinfo is None:
        raise Unreadable("bad-headers", f"ce_time {text['ce_time']!r} has no UTC offset")
    if not key:
        raise Unreadable("bad-key", "the record has no key")
    if key != stream_id.encode():
        raise Unreadable("bad-key", f"key {key[:200]!r} is not the stream {stream_id!r}")
    return Envelope(
        event_id=event_id,
        event_type=text["ce_type"],
        schema_version=schema_version,
        stream_id=stream_id,
        version=version,
        position=position,
        recorded_at=recorded_at.astimezone(UTC),
        traceparent=text.get("ce_traceparent"),
        correlation_id=text.get("ce_correlationid"),
    )


def read_payload(registry: EventRegistry, envelope: Envelope, value: bytes | None) -> Event:
    """The event a record's value holds, or `Unreadable` (`unknown-type` ... `wrong-shape`)."""
    name = envelope.event_type
    try:
        current = registry.current_version(name)
    except UnknownEventType:
        raise Unreadable("unknown-type", f"unknown event type {name[:200]!r}") from None
    if not 1 <= envelope.schema_version <= current:
        raise Unreadable(
            "unknown-schema-version", f"{name} v{envelope.schema_version} (this code reads v1 to v{current})"
        )
    if not value:
        raise Unreadable("bad-json", "the record has no value")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unreadable("bad-bytes", f"the value is not UTF-8: {error}") from None
    try:
        data = registry.decode(name, envelope.schema_version, value)
    except EventDecodeError as error:
        cause = error.__cause__
        if isinstance(cause, msgspec.ValidationError):
            raise Unreadable("wrong-shape", f"{name} v{envelope.schema_version}: {cause}") from error
        if isinstance(cause, msgspec.DecodeError):
            raise Unreadable("bad-json", f"{name} v{envelope.schema_version}: {cause}") from error
        if "no upcaster" in str(error):
            raise Unreadable("unknown-schema-version", str(error)) from error
        raise Unreadable("wrong-shape", str(error)) from error
    except (msgspec.ValidationError, TypeError) as error:  # msgspec.convert after an upcast
        raise Unreadable("wrong-shape", f"{name} v{envelope.schema_version}: {error}") from error
    if not isinstance(data, Event):
        raise Unreadable("unknown-type", f"{name} is not a fulfilment event")
    return data


def _ce_headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The `ce_*` headers as text; a repeated or undecodable one makes the envelope unreadable."""
    text: dict[str, str] = {}
    for name, raw in headers:
        if not name.startswith("ce_"):
            continue
        if name in text:
            raise Unreadable("bad-headers", f"{name} appears twice")
        try:
            text[name] = (raw or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("bad-headers", f"{name} is not UTF-8: {(raw or b'')[:100]!r}") from None
    return text


def _decimal(text: str) -> int | None:
    if not _DECIMAL.fullmatch(text):
        return None
    number = int(text)
    return number if number <= _BIGINT_MAX else None
