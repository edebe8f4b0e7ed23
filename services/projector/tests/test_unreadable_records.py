"""Records written straight into the order topic, against the real servers: each one the projector cannot
read is dead-lettered with its reason class and counted, the projector moves on, and no record's
claimed position moves a projection's position past what it has applied."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from eventstore import NewEvent, PostgresEventStore, StoredEvent
from fulfilment.events import OrderPlaced
from projector_service.bootstrap import Projector
from projector_service.deadletters import DeadLetter, read_dead_letters
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import read_position
from relay_service.envelope import to_message

from libs.fulfilment.tests.hostile import PARAMS, Record
from services.projector.tests.conftest import line
from services.projector.tests.test_consuming import reached, running


async def place(store: PostgresEventStore) -> StoredEvent:
    """An order placed in the store (not published): its stored event."""
    order_id = uuid.uuid4()
    placed = OrderPlaced(
        order_id=order_id, customer_id="ann", lines=(line("mug"),), currency="EUR", total=250
    )
    await store.append(f"order-{order_id}", [NewEvent(data=placed)])
    return (await store.read_all_stored(categories=["order"], limit=100_000))[-1]


def published(projector: Projector, settings: ProjectorSettings, event: StoredEvent) -> Record:
    """The record the relay would write for `event`."""
    message = to_message(
        event, projector.registry, source="/fulfilment", topic_prefix=settings.projector_topic_prefix
    )
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


async def dead_letters(settings: ProjectorSettings) -> list[DeadLetter]:
    letters = await read_dead_letters(settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic)
    return sorted(letters, key=lambda letter: letter.projection)


def counted(service: ProjectorService, projection: str, reason: str) -> float:
    labels = {"projection": projection, "reason": reason}
    return service.metrics.registry.get_sample_value("projector_dead_letters_total", labels) or 0.0


@pytest.mark.parametrize(("reason", "make"), PARAMS)
async def test_an_unreadable_record_is_dead_lettered_counted_and_the_next_record_applied(
    settings: ProjectorSettings,
    projector: Projector,
    store: PostgresEventStore,
    reason: str,
    make: Callable[[Record], Record],
) -> None:
    good = await place(store)
    hostile = make(published(projector, settings, good))
    topic = f"{settings.projector_topic_prefix}order"
    async with running(ProjectorService(projector)) as service:
        records = [hostile, published(projector, settings, good)]
        await produce(settings.kafka_bootstrap_servers, topic, records)
        await reached(projector, good.position)  # the good record after the hostile one is applied
        letters = await dead_letters(settings)
        assert [(letter.projection, letter.reason) for letter in letters] == [
            ("redis", reason),
            ("search", reason),
        ]
        assert all(counted(service, name, reason) == 1 for name in ("redis", "search"))
    for letter in letters:
        assert letter.source.startswith(f"{topic}/0/")
        assert (letter.key, letter.value) == (hostile[0], hostile[1])
        assert letter.error  # the detail
        kept = {(name, value.decode()) for name, value in letter.original_headers}
        assert {(name, value.decode("utf-8", "replace")) for name, value in hostile[2]} <= kept
    summary = projector.keyspace.models("g0").order(str(good.stream_id.removeprefix("order-")))
    assert await projector.redis.hget(summary, "status") == b"pending"


async def test_a_forged_position_never_lets_a_consistency_token_through_before_its_event_is_applied(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore
) -> None:
    first = await place(store)
    topic = f"{settings.projector_topic_prefix}order"
    next_position = first.position + 1  # the identity sequence hands this to the next append
    # Well-formed records of an order the store never held, claiming the next position and one far ahead.
    forged_order = uuid.uuid4()
    template = published(projector, settings, first)
    forged = [
        (
            f"order-{forged_order}".encode(),
            template[1].replace(first.stream_id.removeprefix("order-").encode(), str(forged_order).encode()),
            [
                *(
                    (name, value)
                    for name, value in template[2]
                    if name not in ("ce_id", "ce_subject", "ce_position")
                ),
                ("ce_id", str(uuid.uuid4()).encode()),
                ("ce_subject", f"order-{forged_order}".encode()),
                ("ce_position", str(position).encode()),
            ],
        )
        for position in (next_position, 10**15)
    ]
    async with running(ProjectorService(projector)) as service:
        records = [*forged, published(projector, settings, first)]
        await produce(settings.kafka_bootstrap_servers, topic, records)
        await reached(projector, first.position)
        assert [letter.reason for letter in await dead_letters(settings)] == ["not-in-store"] * 4
        assert all(counted(service, name, "not-in-store") == 2 for name in ("redis", "search"))

        # Someone's command takes the next position; its event is not published yet.
        second = await place(store)
        assert second.position == next_position
        for name, tracker in projector.trackers.items():
            for _ in range(3):
                await tracker.advance()
            assert await read_position(projector.redis, projector.keyspace, name) < second.position, name

        await produce(settings.kafka_bootstrap_servers, topic, [published(projector, settings, second)])
        await reached(projector, second.position)
    keys = projector.keyspace.models("g0")
    assert not await projector.redis.exists(keys.order(str(forged_order)))
