"""Consuming the suite's topics with FastStream: one batch subscriber per projection.

Each projection is its own consumer group (`PROJECTOR_GROUP_PREFIX` + name), so Redis
is served while the search engine is down. Offsets are committed by hand after
`BatchRunner.handle` made the batch durable; records arrive raw (`servicekit.kafka`) so
none is dropped before the runner reads or dead-letters it. `consumer_check` is the
readiness check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka.errors import CommitFailedError, IllegalStateError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from servicekit.kafka import raw_decoder, raw_parser, subscribers_fetch_problem

from projector_service.runner import BatchRunner
from projector_service.settings import ProjectorSettings

__all__ = ["build_broker", "consumer_check"]

log = logging.getLogger(__name__)


def build_broker(settings: ProjectorSettings, runners: Iterable[BatchRunner]) -> KafkaBroker:
    """A broker with one manual-commit batch subscriber per projection."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None, graceful_timeout=10.0)
    for runner in runners:
        topics = [f"{settings.projector_topic_prefix}{category}" for category in runner.projection.categories]
        subscriber = broker.subscriber(
            *topics,
            batch=True,
            group_id=f"{settings.projector_group_prefix}{runner.projection.name}",
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            max_records=settings.projector_batch_size,
            batch_timeout_ms=settings.projector_batch_timeout_ms,
            max_poll_interval_ms=10 * 60 * 1000,  # a store outage pauses the handler this long at most
            parser=raw_parser,
            decoder=raw_decoder,
        )
        subscriber(_handler(runner))
    return broker


def _handler(runner: BatchRunner) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def handle(message: KafkaMessage) -> None:
        records = message.raw_message if isinstance(message.raw_message, tuple) else (message.raw_message,)
        try:
            await runner.handle(records)
        except Exception:
            # Unexpected (the runner handles store outages and bad events itself): rewind
            # to the batch's first records so nothing is committed past it, and retry.
            # Logged here: the broker's own logger is off.
            log.exception("%s: batch failed, consuming it again", runner.projection.name)
            runner.status.consuming = False
            # IllegalStateError: the partitions went to another instance, which starts from the commit.
            with contextlib.suppress(IllegalStateError):
                await message.nack()
            raise
        try:
            await message.ack()
        except CommitFailedError as error:
            # A rebalance took the partitions while the batch was applied: the new owner
            # reads them from the last commit, and the version guards absorb the repeat.
            log.warning("%s: offsets not committed after a rebalance: %s", runner.projection.name, error)
        runner.status.consuming = True

    return handle


async def consumer_check(broker: KafkaBroker, *, timeout: float = 2.0) -> str | None:
    """Readiness: None while every projection's consumer could fetch from Kafka, else why not."""
    return await subscribers_fetch_problem(broker.subscribers, timeout=timeout)
