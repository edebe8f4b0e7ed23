"""Consuming the order topic with FastStream: an order placed starts a saga, a cancellation compensates.

An event is acknowledged once its input is recorded in the saga's stream (which arms
the wake-up timer); the saga is driven after, in the background. The handler gets raw
records, read strictly by `fulfilment.records`: one the saga cannot read goes to the
dead-letter topic with its reason class, a log line and a metric. `consumer_check` is
the readiness check. See docs/saga.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

import msgspec
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, TopicAlreadyExistsError, for_code
from eventstore import EventRegistry
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from fulfilment import order_stream
from fulfilment.events import Event, OrderCancelled, OrderPlaced
from fulfilment.records import Envelope, Unreadable, read_envelope, read_payload
from fulfilment.registry import build_registry
from prometheus_client import CollectorRegistry, Counter
from servicekit.kafka import raw_decoder, raw_parser, subscribers_fetch_problem
from servicekit.telemetry import context_of, traceparent_of

from saga_service.events import SagaLine
from saga_service.orchestrator import Orchestrator
from saga_service.saga import Begin, Cancel, SagaRefused
from saga_service.settings import SagaSettings

__all__ = ["build_broker", "consumer_check", "ensure_topics", "input_of", "read_order_event", "to_input"]

log = logging.getLogger(__name__)


def to_input(event_type: str, value: bytes) -> Begin | Cancel | None:
    """The saga input an order event's JSON means, or None for events the saga does not act on.

    Raises `msgspec.ValidationError`/`DecodeError` for a payload that is not the event it says.
    """
    if event_type == "OrderPlaced":
        return input_of(msgspec.json.decode(value, type=OrderPlaced))
    if event_type == "OrderCancelled":
        return input_of(msgspec.json.decode(value, type=OrderCancelled))
    return None


def input_of(event: Event) -> Begin | Cancel | None:
    """The saga input a decoded event means, or None for events the saga does not act on."""
    at = datetime.now(UTC)
    if isinstance(event, OrderPlaced):
        return Begin(
            order_id=event.order_id,
            customer_id=event.customer_id,
            lines=tuple(SagaLine(sku=line.sku, quantity=line.quantity) for line in event.lines),
            currency=event.currency,
            total=event.total,
            at=at,
        )
    if isinstance(event, OrderCancelled):
        return Cancel(reason=event.reason, at=at)
    return None


def read_order_event(registry: EventRegistry, record: ConsumerRecord[bytes, bytes]) -> tuple[Envelope, Event]:
    """The envelope and event of one record of the order topic, or `Unreadable` with its reason class.

    An order event must also be about the stream it names: the saga keys its work on the order id.
    """
    envelope = read_envelope(record.key, list(record.headers or ()))
    event = read_payload(registry, envelope, record.value)
    order_id = getattr(event, "order_id", None)
    if isinstance(order_id, UUID) and envelope.stream_id != order_stream(order_id):
        raise Unreadable("bad-headers", f"ce_subject {envelope.stream_id!r} is not the order's stream")
    return envelope, event


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
    """A broker with one manual-commit subscriber on the order topic, handed the raw records."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None, graceful_timeout=10.0)
    consumed = Counter(
        "saga_events_consumed",
        "Order events consumed, by type and what came of them",
        ["type", "result"],
        registry=registry,
    )
    dead_letters = Counter(
        "saga_dead_letters",
        "Records of the order topic sent to the dead-letter topic, by reason class",
        ["reason"],
        registry=registry,
    )
    subscriber = broker.subscriber(
        f"{settings.saga_topic_prefix}order",
        group_id=settings.saga_group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        # FastStream decodes nothing: every record reaches the handler, which dead-letters what it
        # cannot read (FastStream's own decoding dropped a non-JSON value labelled JSON unseen).
        parser=raw_parser,
        decoder=raw_decoder,
    )

    async def dead_letter(record: ConsumerRecord[bytes, bytes], reason: str, detail: str) -> None:
        headers = {name: (value or b"").decode(errors="replace") for name, value in record.headers or ()}
        headers["dead_letter_class"] = reason
        headers["dead_letter_reason"] = f"{reason}: {detail}"[:1000]
        headers["dead_letter_source"] = f"{record.topic}/{record.partition}/{record.offset}"
        await broker.publish(
            record.value, topic=settings.saga_dead_letter_topic, key=record.key, headers=headers
        )
        dead_letters.labels(reason).inc()

    subscriber(_handler(orchestrator, build_registry(), consumed, dead_letter))
    return broker


async def consumer_check(broker: KafkaBroker, *, timeout: float = 2.0) -> str | None:
    """Readiness: None while the order topic's consumer could fetch from Kafka, else why not."""
    return await subscribers_fetch_problem(broker.subscribers, timeout=timeout)


def _handler(
    orchestrator: Orchestrator,
    events: EventRegistry,
    consumed: Counter,
    dead_letter: Callable[[ConsumerRecord[bytes, bytes], str, str], Awaitable[None]],
) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def handle(message: KafkaMessage) -> None:
        record = cast("ConsumerRecord[bytes, bytes]", message.raw_message)
        headers = list(record.headers or ())
        with orchestrator.tracer.start_as_current_span(
            "saga consume", context=context_of(traceparent_of(headers))
        ) as span:
            span.set_attribute("messaging.kafka.offset", record.offset)
            try:
                envelope, event = read_order_event(events, record)
            except Unreadable as error:
                # No retry could make anything of it: it goes to the dead-letter topic with the
                # reason, acknowledged only once it is there.
                try:
                    await dead_letter(record, error.reason, error.detail)
                except Exception:
                    log.exception(
                        "dead-lettering %s/%s failed; consuming it again", record.partition, record.offset
                    )
                    with _rebalanced():
                        await message.nack()
                    raise
                log.error(
                    "dead-lettered %s/%s/%s (%s): %s",
                    record.topic, record.partition, record.offset, error.reason, error.detail,
                )  # fmt: skip
                await _ack(message)
                return
            span.update_name(f"saga consume {envelope.event_type}")
            command = input_of(event)
            if command is None:
                await _ack(message)
                return
            assert isinstance(event, OrderPlaced | OrderCancelled)  # the events input_of acts on
            order_id = event.order_id
            try:
                applied = await orchestrator.record(order_id, command)
            except SagaRefused:
                # A cancellation of an order this saga never saw start (placed before it ran).
                consumed.labels(envelope.event_type, "no-saga").inc()
                await _ack(message)
                return
            except Exception:
                with _rebalanced():
                    await message.nack()
                raise
            consumed.labels(envelope.event_type, "recorded" if applied.events else "duplicate").inc()
        await _ack(message)
        orchestrator.kick(order_id)

    return handle


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
