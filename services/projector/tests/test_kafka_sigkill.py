"""Kafka SIGKILLed under a running projector: the watch never lets a consumer stay stuck unnoticed.

While Kafka is down the watch waits. Once Kafka is back, the consumer either
fetches again by itself, or (as aiokafka was seen to do after a SIGKILL: no group
coordinator for good, though the broker answers and has loaded the group) the
watch raises `ConsumerStalled`, which the kit turns into the end of the process
and the supervisor into a new one.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from eventstore import PostgresEventStore
from fulfilment.registry import build_registry
from projector_service.bootstrap import Projector
from projector_service.consumer import consumer_check
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from servicekit.kafka import ConsumerStalled, kafka_answers, watch_fetching

from libs.servicekit.tests.kafka_outage import own_kafka, turns
from services.projector.tests.test_consuming import reached, running
from services.projector.tests.test_unreadable_records import place, produce, published

pytestmark = pytest.mark.slow

STALL = 20.0


async def test_a_consumer_stuck_after_kafka_was_killed_is_noticed_once_kafka_answers(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore
) -> None:
    async with own_kafka() as kafka:
        bootstrap = kafka.url("KAFKA_BOOTSTRAP_SERVERS")
        own = msgspec.structs.replace(settings, kafka_bootstrap_servers=bootstrap)
        consumer = await Projector.open(own, build_registry())
        try:
            async with running(ProjectorService(consumer)) as service:
                check = lambda: consumer_check(service.broker)  # noqa: E731
                await turns(check, ready=True, timeout=60)
                watch = asyncio.create_task(watch_fetching(check, bootstrap, stall_after=STALL, every=1.0))

                kafka.kill("kafka")
                await turns(check, ready=False, timeout=60)
                await asyncio.sleep(STALL + 5)
                assert not watch.done(), "the watch gave up while Kafka was down"
                assert not await kafka_answers(bootstrap)

                await kafka.up("kafka")
                async with asyncio.timeout(180):
                    while not watch.done() and await check() is not None:  # noqa: ASYNC110
                        await asyncio.sleep(1)
                if watch.done():
                    with pytest.raises(ConsumerStalled, match="while Kafka answers"):
                        watch.result()
                else:  # it came back by itself: then it consumes too
                    watch.cancel()
                    after = await place(store)
                    topic = f"{own.projector_topic_prefix}order"
                    await produce(bootstrap, topic, [published(projector, own, after)])
                    await reached(projector, after.position, timeout=120)
        finally:
            await consumer.close()
