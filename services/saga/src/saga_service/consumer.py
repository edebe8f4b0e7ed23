"""Consuming the order topic with FastStream: an order placed starts a saga, a cancellation compensates.

The instances of the saga service form one consumer group, so each order's
events (keyed by stream id) go to one instance at a time, in order. An event is
acknowledged after its input is recorded in the saga's stream (which also arms
the wake-up timer); driving the saga happens after, in the background. A
redelivered event decides nothing the second time. Each message's span continues
the trace in its `ce_traceparent`, so the saga's commands join the trace of the
request that placed the order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from uuid import UUID

import msgspec
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, TopicAlreadyExistsError, for_code
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from fulfilment.events import OrderCancelled, OrderPlaced
from prometheus_client import CollectorRegistry, Counter
from servicekit.telemetry import context_of, header_value, traceparent_of

from saga_service.events import SagaLine
from saga_service.orchestrator import Orchestrator
from saga_service.saga import Begin, Cancel, SagaRefused
from saga_service.settings import SagaSettings

__all__ = ["build_broker", "ensure_topics", "to_input"]

log = logging.getLogger(__name__)


def to_input(event_type: str, value: bytes) -> Begin | Cancel | None:
    """The saga input an order event means, or None for events the saga does not act on.

    Raises `msgspec.ValidationError`/`DecodeError` for a payload that is not the event it says.
    """
    at = datetime.now(UTC)
    if event_type == "OrderPlaced":
        placed = msgspec.json.decode(value, type=OrderPlaced)
        return Begin(
            order_id=placed.order_id,
            customer_id=placed.customer_id,
            lines=tuple(SagaLine(sku=line.sku, quantity=line.quantity) for line in placed.lines),
            currency=placed.currency,
            total=placed.total,
            at=at,
        )
    if event_type == "OrderCancelled":
        cancelled = msgspec.json.decode(value, type=OrderCancelled)
        return Cancel(reason=cancelled.reason, at=at)
    return None


async def ensure_topics(settings: SagaSettings) -> None:
    """Create the order topic and the dead-letter topic if nobody has yet (brokers never auto-create):
    a consumer subscribed to a missing topic would only notice it when its metadata next refreshes."""
    topics = {f"{settings.saga_topic_prefix}order", settings.saga_dead_letter_topic}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        missing = topics - set(await admin.list_topics())
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(topic, settings.saga_topic_partitions, settings.saga_topic_replication)
                for topic in missing
            ]
        )
        for name, code, *message in response.topic_errors:
            # "already exists": the relay or another instance created it between list and create
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {name}: {message}")
    finally:
        await admin.close()


def build_broker(
    settings: SagaSettings, orchestrator: Orchestrator, registry: CollectorRegistry
) -> KafkaBroker:
    """A broker with one manual-commit subscriber on the order topic."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None, graceful_timeout=10.0)
    consumed = Counter(
        "saga_events_consumed",
        "Order events consumed, by type and what came of them",
        ["type", "result"],
        registry=registry,
    )
    subscriber = broker.subscriber(
        f"{settings.saga_topic_prefix}order",
        group_id=settings.saga_group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
    )

    async def dead_letter(record: ConsumerRecord, reason: str) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        headers["dead_letter_reason"] = reason[:1000]
        headers["dead_letter_source"] = f"{record.topic}/{record.partition}/{record.offset}"
        await broker.publish(
            record.value, topic=settings.saga_dead_letter_topic, key=record.key, headers=headers
        )

    subscriber(_handler(orchestrator, consumed, dead_letter))
    return broker


def _handler(
    orchestrator: Orchestrator,
    consumed: Counter,
    dead_letter: Callable[[ConsumerRecord, str], Awaitable[None]],
) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def handle(message: KafkaMessage) -> None:
        record = message.raw_message
        headers = list(record.headers or ())  # type: ignore[union-attr]
        event_type = header_value(headers, "ce_type") or "unknown"
        with orchestrator.tracer.start_as_current_span(
            f"saga consume {event_type}", context=context_of(traceparent_of(headers))
        ) as span:
            span.set_attribute("messaging.kafka.offset", record.offset)  # type: ignore[union-attr]
            subject = header_value(headers, "ce_subject") or ""
            try:
                command = to_input(event_type, record.value)  # type: ignore[union-attr]
                if command is None:
                    await _ack(message)
                    return
                order_id = command.order_id if isinstance(command, Begin) else _order_of(subject)
            except (msgspec.MsgspecError, ValueError) as error:
                # Not an order event the suite would publish: no retry could make anything of it.
                # It goes to the dead-letter topic with the reason (acknowledged only once it is there).
                log.error("unreadable %s at offset %s: %s", event_type, record.offset, error)  # type: ignore[union-attr]
                try:
                    await dead_letter(record, f"{type(error).__name__}: {error}")
                except Exception:
                    with _rebalanced():
                        await message.nack()
                    raise
                consumed.labels(event_type, "dead-lettered").inc()
                await _ack(message)
                return
            try:
                applied = await orchestrator.record(order_id, command)
            except SagaRefused:
                # A cancellation of an order this saga never saw start (placed before it ran).
                consumed.labels(event_type, "no-saga").inc()
                await _ack(message)
                return
            except Exception:
                with _rebalanced():
                    await message.nack()
                raise
            consumed.labels(event_type, "recorded" if applied.events else "duplicate").inc()
        await _ack(message)
        orchestrator.kick(order_id)

    return handle


def _order_of(subject: str) -> UUID:
    return UUID(subject.removeprefix("order-"))


async def _ack(message: KafkaMessage) -> None:
    with _rebalanced():
        await message.ack()


@contextlib.contextmanager
def _rebalanced() -> Iterator[None]:
    """Offsets that cannot be committed because the partition moved: the new owner repeats from the
    last commit, and the saga decides nothing for what it already recorded."""
    try:
        yield
    except (CommitFailedError, IllegalStateError) as error:
        log.warning("offset not committed after a rebalance: %s", error)
