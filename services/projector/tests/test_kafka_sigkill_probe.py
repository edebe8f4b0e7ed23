"""Readiness through a Kafka outage: a projector that cannot fetch is not ready, and once Kafka is back
it is ready again and consumes by itself. Kafka is the test's own (stopped and started with the local
stack's CLI)."""

from __future__ import annotations

import msgspec
import pytest
from eventstore import PostgresEventStore
from fulfilment.registry import build_registry
from projector_service.bootstrap import Projector
from projector_service.consumer import consumer_check
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings

from libs.servicekit.tests.kafka_outage import own_kafka, turns
from services.projector.tests.test_consuming import reached, running
from services.projector.tests.test_unreadable_records import place, produce, published

pytestmark = pytest.mark.slow


async def test_after_a_sigkill_of_kafka_the_consumer_resumes(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore
) -> None:
    async with own_kafka() as kafka:
        bootstrap = kafka.url("KAFKA_BOOTSTRAP_SERVERS")
        own = msgspec.structs.replace(settings, kafka_bootstrap_servers=bootstrap)
        topic = f"{own.projector_topic_prefix}order"
        consumer = await Projector.open(own, build_registry())
        try:
            async with running(ProjectorService(consumer)) as service:
                check = lambda: consumer_check(service.broker)  # noqa: E731
                await turns(check, ready=True, timeout=60)
                before = await place(store)
                await produce(bootstrap, topic, [published(projector, own, before)])
                await reached(projector, before.position)

                kafka.kill("kafka")
                reason = await turns(check, ready=False, timeout=60)
                assert reason

                await kafka.up("kafka")
                await turns(check, ready=True, timeout=120)
                after = await place(store)
                await produce(bootstrap, topic, [published(projector, own, after)])
                await reached(projector, after.position, timeout=120)
        finally:
            await consumer.close()
