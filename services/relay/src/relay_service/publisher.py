"""The publishing loop: global log → Kafka, checkpoint after acknowledgement.

`_pump` follows the store's subscription and hands events to the producer; `_confirm`
moves the checkpoint to the newest event whose send and every earlier one were
acknowledged (`acks=all`). A crash loses nothing: the next leader re-sends after the
checkpoint (at-least-once). A third task probes the broker every second, so
`kafka_connected` is true to the connection even with nothing to send.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from eventstore import LogPosition, PostgresEventStore, StoredEvent, leadership
from eventstore.errors import StoreUnavailable
from opentelemetry.trace import Link, SpanKind, Tracer, get_tracer
from servicekit.telemetry import link_to

from relay_service.envelope import to_message
from relay_service.settings import RelaySettings
from relay_service.status import RelayStatus
from relay_service.topics import CHANNELS, TopicCreator, contract_topics

__all__ = ["Relay", "make_producer"]

log = logging.getLogger(__name__)

# Far more than the producer holds in flight; bounds memory if acks stall.
MAX_UNCONFIRMED = 50_000
# A confirmed batch's span links to the traces of at most this many of its events.
MAX_SPAN_LINKS = 64
# How often the broker is asked for metadata while publishing, and how long an answer may take.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 3.0

type Unconfirmed = deque[tuple[StoredEvent, asyncio.Future[object]]]


class LeadershipLost(Exception):
    """The advisory lock's connection broke: another relay may publish now."""


class DeliveryStalled(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """Kafka has not acknowledged the oldest message in time.

    aiokafka keeps retrying a batch while the broker is unreachable instead of
    failing it, so the relay puts its own limit on the wait for an ack.
    """


def make_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """The producer the relay and its benchmark use: idempotent, acks from all replicas, batched."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,  # broker-side dedup of retried batches; keeps per-partition order
        linger_ms=5,  # a few ms of batching buys far more throughput than it costs latency
        max_batch_size=1 << 20,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )


class Relay:
    """Publishes every event of the global log to its category's topic, as the one active relay."""

    def __init__(
        self,
        settings: RelaySettings,
        store: PostgresEventStore,
        status: RelayStatus | None = None,
        producer_factory: Callable[[str], AIOKafkaProducer] = make_producer,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._tracer = tracer or get_tracer("relay")
        self._store = store
        self.status = status or RelayStatus()
        self._producer_factory = producer_factory
        self._topics = TopicCreator(
            settings.kafka_bootstrap_servers,
            partitions=settings.relay_partitions,
            replication_factor=settings.relay_replication_factor,
            retention_ms=settings.relay_retention_ms,
        )

    async def run(self) -> None:
        """Publish until cancelled, surviving Kafka outages and lost leadership."""
        failures = 0
        while True:
            try:
                async with leadership(
                    self._settings.database_url,
                    self._settings.relay_lock_key,
                    poll_interval=self._settings.relay_standby_poll,
                    on_standby=self._standby,
                    application_name="relay-leadership",
                ) as lost:
                    self.status.role = "leader"
                    while not lost.is_set():
                        try:
                            await self._publish(lost)
                        # Only outages are waited out: an event it cannot publish (an unknown type, a
                        # payload that does not decode) ends the loop, and with it the process, loudly.
                        except* (KafkaError, OSError, StoreUnavailable) as group:
                            failures += 1
                            self._failed(group.exceptions[0], failures)
                            await asyncio.sleep(self._backoff(failures))
                        else:
                            failures = 0
            except* LeadershipLost:
                self.status.role = "starting"
            except* (OSError, StoreUnavailable) as group:
                # PostgreSQL itself is unreachable or restarting.
                failures += 1
                self._failed(group.exceptions[0], failures)
                self.status.role = "starting"
                await asyncio.sleep(self._backoff(failures))

    def _standby(self) -> None:
        self.status.role = "standby"

    def _failed(self, error: BaseException, failures: int) -> None:
        self.status.failed(error)
        log.warning("relay publishing failed (attempt %d): %s", failures, error)

    def _backoff(self, failures: int) -> float:
        # Exponential with full jitter, so relays restarted together do not retry in step.
        ceiling = min(self._settings.relay_max_backoff, 0.2 * 2 ** min(failures, 10))
        return random.uniform(ceiling / 2, ceiling)

    async def _publish(self, lost: asyncio.Event) -> None:
        producer = self._producer_factory(self._settings.kafka_bootstrap_servers)
        try:
            # Inside the try: a start that fails has opened connections too, and an
            # unstopped producer warns "Unclosed AIOKafkaProducer" on every retry.
            await producer.start()
            # The contract's topics exist before anything is published, so consumers
            # that subscribe early find them, whatever categories the log holds yet.
            await self._topics.ensure(contract_topics(self._settings.relay_topic_prefix))
            self.status.kafka_connected = True
            unconfirmed: Unconfirmed = deque()
            sent = asyncio.Event()
            after = await self._store.load_checkpoint(self._settings.relay_checkpoint) or LogPosition.START
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(producer, after, unconfirmed, sent))
                group.create_task(self._confirm(unconfirmed, sent))
                group.create_task(self._probe(producer))
                group.create_task(_raise_when(lost))
        finally:
            await _stop(producer)

    async def _pump(
        self, producer: AIOKafkaProducer, after: LogPosition, unconfirmed: Unconfirmed, sent: asyncio.Event
    ) -> None:
        settings, registry = self._settings, self._store.registry
        # Only the categories the contract declares, whose topics _publish has created: other
        # services keep streams of their own in the same store (the saga's), which are not published.
        published = list(CHANNELS)
        async for event in self._store.subscribe_all_stored(
            after, categories=published, batch_size=settings.relay_batch_size
        ):
            message = to_message(
                event,
                registry,
                source=settings.relay_source,
                topic_prefix=settings.relay_topic_prefix,
                dataschema_base=settings.relay_dataschema_base,
            )
            future = await producer.send(
                message.topic, message.value, key=message.key, headers=message.headers
            )
            unconfirmed.append((event, future))
            sent.set()
            if len(unconfirmed) >= MAX_UNCONFIRMED:
                await asyncio.shield(unconfirmed[0][1])

    async def _probe(self, producer: AIOKafkaProducer) -> None:
        # A metadata round trip to any known broker, for the relay's own topics only: the metadata
        # of every topic of a shared cluster (thousands) cost the idle relay most of its CPU. While
        # the broker is away the producer keeps its batches and retries; only the flag changes
        # here, and a stalled ack (see _confirm) still ends the session.
        topics = sorted(contract_topics(self._settings.relay_topic_prefix))
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await asyncio.wait_for(_metadata_of(producer, topics), PROBE_TIMEOUT)
            except (KafkaError, OSError, TimeoutError) as error:
                if self.status.kafka_connected:
                    log.warning("Kafka does not answer: %r", error)
                self.status.kafka_connected = False
            else:
                if not self.status.kafka_connected:
                    log.info("Kafka answers again")
                self.status.kafka_connected = True

    async def _confirm(self, unconfirmed: Unconfirmed, sent: asyncio.Event) -> None:
        while True:
            if not unconfirmed:
                sent.clear()
                await sent.wait()
                continue
            event, oldest = unconfirmed[0]
            try:
                # The send's own error, or our deadline, ends the session; the next one resends.
                await asyncio.wait_for(asyncio.shield(oldest), self._settings.relay_ack_timeout)
            except TimeoutError:
                raise DeliveryStalled(
                    f"no ack from Kafka within {self._settings.relay_ack_timeout}s "
                    f"for position {event.position}"
                ) from None
            confirmed: list[StoredEvent] = []
            while unconfirmed and unconfirmed[0][1].done():
                event, future = unconfirmed.popleft()
                future.result()
                confirmed.append(event)
            if confirmed:
                await self._checkpoint(confirmed)

    async def _checkpoint(self, confirmed: list[StoredEvent]) -> None:
        """Move the checkpoint past `confirmed`, in a span linked to the traces that caused them."""
        newest = confirmed[-1]
        links = [link for event in confirmed[:MAX_SPAN_LINKS] if (link := _link(event)) is not None]
        with self._tracer.start_as_current_span(
            "relay publish",
            kind=SpanKind.PRODUCER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.batch.message_count": len(confirmed),
                "eventstore.position.first": confirmed[0].position,
                "eventstore.position.last": newest.position,
            },
        ):
            await self._store.save_checkpoint(self._settings.relay_checkpoint, newest.log_position)
        self.status.published(len(confirmed), newest.position, newest.recorded_at)


async def _stop(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    # stop() flushes pending batches, which never ends while the broker is away.
    # Abandoning them is safe: their events are after the checkpoint and the next
    # session sends them again (under a new producer id).
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except TimeoutError:
        log.warning("Kafka producer did not flush within %ss; abandoning its pending sends", timeout)
        await producer.client.close()


def _link(event: StoredEvent) -> Link | None:
    return link_to(event.metadata.traceparent)


async def _raise_when(lost: asyncio.Event) -> None:
    await lost.wait()
    raise LeadershipLost


async def _metadata_of(producer: AIOKafkaProducer, topics: list[str]) -> None:
    """One metadata request for `topics` to a broker the producer knows."""
    node = producer.client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    await producer.client.send(node, MetadataRequest(topics, allow_auto_topic_creation=False))
