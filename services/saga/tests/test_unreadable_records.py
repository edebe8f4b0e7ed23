"""Records written straight into the order topic, against real Kafka and PostgreSQL: each one the saga
cannot read is dead-lettered with its reason class, logged and counted, nothing is started for it,
and the order placed after it gets its saga."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from eventstore import PostgresEventStore, StoredEvent, connect
from faststream.kafka import KafkaBroker
from fulfilment import order_stream
from fulfilment.registry import build_registry
from prometheus_client import CollectorRegistry
from relay_service.envelope import to_message
from saga_service.consumer import build_broker, ensure_topics
from saga_service.events import build_saga_registry, saga_stream
from saga_service.orchestrator import Orchestrator
from saga_service.settings import SagaSettings

from libs.fulfilment.tests.hostile import PARAMS, Record
from services.saga.tests.conftest import AUDIENCE, ISSUER, PROVIDER_SECRET, SECRET, World


def saga_settings(world: World, redis_url: str, kafka_bootstrap_servers: str) -> SagaSettings:
    prefix = f"saga{uuid.uuid4().hex[:8]}."
    return msgspec.convert(
        {
            "database_url": world.saga_url,
            "redis_url": redis_url,
            "kafka_bootstrap_servers": kafka_bootstrap_servers,
            "saga_provider_secret": PROVIDER_SECRET,
            "saga_topic_prefix": prefix,
            "saga_group_id": f"saga-{prefix}",
            "saga_dead_letter_topic": f"{prefix}saga.dead-letters",
            "saga_topic_partitions": 3,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_secret": SECRET,
        },
        SagaSettings,
    )


@contextlib.asynccontextmanager
async def consuming(
    world: World, settings: SagaSettings
) -> AsyncIterator[tuple[KafkaBroker, CollectorRegistry, Orchestrator]]:
    """One saga instance consuming the order topic, as the service wires it."""
    await ensure_topics(settings)
    metrics = CollectorRegistry()
    async with world.instance("consumer-test", payment_timeout=60) as orchestrator:
        broker = build_broker(settings, orchestrator, metrics)
        await broker.start()
        try:
            yield broker, metrics, orchestrator
        finally:
            await broker.stop()


async def placed_record(world: World, order_id: uuid.UUID) -> Record:
    """The record the relay writes for the order's `OrderPlaced`."""
    stored: list[StoredEvent] = await world.store.read_all_stored(categories=["order"], limit=100_000)
    (event,) = [e for e in stored if e.stream_id == order_stream(order_id)]
    message = to_message(event, build_registry(), source="/fulfilment", topic_prefix="")
    return message.key, message.value, message.headers


async def produce(bootstrap_servers: str, topic: str, records: Sequence[Record]) -> None:
    """Write `records` in this order to partition 0 of `topic`, as anybody with access could."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


async def first_dead_letter(bootstrap_servers: str, topic: str) -> ConsumerRecord[bytes, bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            record: ConsumerRecord[bytes, bytes] = await consumer.getone()
            return record
    finally:
        await consumer.stop()


async def saga_events(world: World, order_id: uuid.UUID, *, timeout: float = 30) -> list[str]:
    """The saga's stream of the order, once it exists."""
    pool = await connect(world.saga_url, min_size=1, max_size=1)
    store = PostgresEventStore(pool, build_saga_registry())
    try:
        async with asyncio.timeout(timeout):
            while not (events := await store.read_stream(saga_stream(order_id))):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return [event.event_type for event in events]
    finally:
        await store.close()
        await pool.close()


@pytest.mark.parametrize(("reason", "make"), PARAMS)
async def test_an_unreadable_order_record_is_dead_lettered_counted_and_the_next_order_gets_its_saga(
    world: World,
    redis_url: str,
    kafka_bootstrap_servers: str,
    reason: str,
    make: Callable[[Record], Record],
) -> None:
    settings = saga_settings(world, redis_url, kafka_bootstrap_servers)
    topic = f"{settings.saga_topic_prefix}order"
    hostile_order, good_order = await world.place("ann", ("MUG", 1)), await world.place("bob", ("MUG", 1))
    hostile = make(await placed_record(world, hostile_order))
    async with consuming(world, settings) as (_, metrics, _):
        await produce(kafka_bootstrap_servers, topic, [hostile, await placed_record(world, good_order)])
        assert (await saga_events(world, good_order))[0] == "SagaStarted"  # the consumer moved on
        letter = await first_dead_letter(kafka_bootstrap_servers, settings.saga_dead_letter_topic)
        assert metrics.get_sample_value("saga_dead_letters_total", {"reason": reason}) == 1
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["dead_letter_class"] == reason
    assert headers["dead_letter_reason"].startswith(f"{reason}: ")
    assert headers["dead_letter_source"].startswith(f"{topic}/0/")
    assert (letter.key, letter.value) == (hostile[0], hostile[1])
    assert {(name, value.decode("utf-8", "replace")) for name, value in hostile[2]} <= set(headers.items())
    # Nothing was started for the hostile record (for a schema version 99, the order's own saga).
    with pytest.raises(TimeoutError):
        await saga_events(world, hostile_order, timeout=1)
