"""Readiness through a Kafka outage: a saga consumer that cannot fetch is not ready, and once Kafka is
back it is ready again and consumes by itself. Kafka is the test's own (stopped and started with the
local stack's CLI)."""

from __future__ import annotations

import pytest
from saga_service.consumer import consumer_check

from libs.servicekit.tests.kafka_outage import own_kafka, turns
from services.saga.tests.conftest import World
from services.saga.tests.test_unreadable_records import (
    consuming,
    placed_record,
    produce,
    saga_events,
    saga_settings,
)

pytestmark = pytest.mark.slow


async def test_the_consumer_is_not_ready_while_kafka_is_down_and_resumes_by_itself_when_it_is_back(
    world: World, redis_url: str
) -> None:
    async with own_kafka() as kafka:
        bootstrap = kafka.url("KAFKA_BOOTSTRAP_SERVERS")
        settings = saga_settings(world, redis_url, bootstrap)
        topic = f"{settings.saga_topic_prefix}order"
        async with consuming(world, settings) as (broker, _, _):
            check = lambda: consumer_check(broker)  # noqa: E731
            await turns(check, ready=True, timeout=60)
            before = await world.place("ann", ("MUG", 1))
            await produce(bootstrap, topic, [await placed_record(world, before)])
            assert (await saga_events(world, before))[0] == "SagaStarted"

            await kafka.stop()
            assert await turns(check, ready=False, timeout=60)

            await kafka.up("kafka")
            await turns(check, ready=True, timeout=120)
            after = await world.place("bob", ("MUG", 1))
            await produce(bootstrap, topic, [await placed_record(world, after)])
            assert (await saga_events(world, after, timeout=120))[0] == "SagaStarted"
