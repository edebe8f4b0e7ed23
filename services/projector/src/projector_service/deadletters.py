"""The dead-letter topic: events a projection cannot apply, with the reason, ready to replay.

A dead letter is the original record (key, value and every header unchanged)
plus `dlq_*` headers saying which projection gave up on it, why (`dlq_reason`,
the class, and `dlq_error`, the detail), after how many tries, and where it
came from. Reading them back needs nothing but Kafka, so the CLI can list and
show them; replaying applies the event again through the same projection code
(after the fix), if the event store holds it as the record says, and remembers,
in Redis, which dead letters were replayed so a second replay skips them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["DeadLetter", "DeadLetterWriter", "KafkaRecord", "ensure_topics", "read_dead_letters"]

# (value, key, headers) -> published; the service passes its FastStream broker's publish.
type Publish = Callable[[bytes, bytes | None, dict[str, str]], Awaitable[None]]


class KafkaRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the dead-letter topic, decoded for people and for replays."""

    id: str  # partition:offset in the dead-letter topic
    projection: str
    reason: str  # the class: fulfilment.records.REASONS, not-in-store or refused
    error: str
    attempts: int
    failed_at: str
    source: str  # topic/partition/offset of the original record
    event_type: str | None
    stream_id: str | None
    position: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, value) for name, value in self.headers if not name.startswith("dlq_")]


class DeadLetterWriter:
    """Sends records a projection gave up on to the dead-letter topic."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    async def send(
        self, record: KafkaRecord, *, projection: str, reason: str, error: str, attempts: int
    ) -> None:
        """Publish `record` unchanged (a header value that is not UTF-8 is kept with replacement
        characters: the publisher takes text) with the `dlq_*` headers; `reason` is the class."""
        headers = {name: (value or b"").decode("utf-8", "replace") for name, value in record.headers}
        headers.update(
            dlq_projection=projection,
            dlq_reason=reason,
            dlq_error=error[:2000],
            dlq_attempts=str(attempts),
            dlq_failed_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            dlq_source=f"{record.topic}/{record.partition}/{record.offset}",
        )
        await self._publish(record.value or b"", record.key, headers)


async def ensure_topics(bootstrap_servers: str, topics: Sequence[str], *, partitions: int) -> None:
    """Create the topics that do not exist yet (the brokers never auto-create).

    The projector creates the dead-letter topic, and the topics it consumes if the
    relay has not created them yet: a consumer subscribed to a missing topic would
    only notice it on its next metadata refresh.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if not missing:
            return
        new = [NewTopic(topic, partitions, 1) for topic in missing]
        response = await admin.create_topics(new, timeout_ms=30_000)
        for name, code, *message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"creating topic {name}: error {code} {message}")
    finally:
        await admin.close()


def _decode(partition: int, offset: int, record: Any) -> DeadLetter:
    headers = [(name, value) for name, value in record.headers]
    text = {name: value.decode("utf-8", "replace") for name, value in headers}
    position = text.get("ce_position")
    return DeadLetter(
        id=f"{partition}:{offset}",
        projection=text.get("dlq_projection", "?"),
        reason=text.get("dlq_reason", "refused"),
        error=text.get("dlq_error", ""),
        attempts=int(text.get("dlq_attempts", "0") or 0),
        failed_at=text.get("dlq_failed_at", ""),
        source=text.get("dlq_source", ""),
        event_type=text.get("ce_type"),
        stream_id=text.get("ce_subject"),
        position=int(position) if position and position.isascii() and position.isdigit() else None,
        key=record.key,
        value=record.value,
        headers=headers,
    )


async def read_dead_letters(bootstrap_servers: str, topic: str, *, timeout: float = 10.0) -> list[DeadLetter]:
    """Every message of the dead-letter topic, in (partition, offset) order; no consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []  # nothing was ever dead-lettered
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka assigns in the background
                await asyncio.sleep(0.05)
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        letters: list[DeadLetter] = []
        async with asyncio.timeout(timeout):
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    letters += [_decode(tp.partition, r.offset, r) for r in records if r.offset < ends[tp]]
        return sorted(letters, key=lambda letter: tuple(int(part) for part in letter.id.split(":")))
    finally:
        await consumer.stop()
