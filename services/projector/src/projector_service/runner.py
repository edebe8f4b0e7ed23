"""One batch of Kafka records through one projection: decode, apply, dead-letter, mark.

The order of things is what makes it at-least-once without loss:

1. decode every record; one that is not a well-formed known event is poison;
2. apply the batch's events to every target generation. While a store is
   unreachable (Redis, the search engine, PostgreSQL for a gap fill) the batch is
   retried with exponential backoff and full jitter, for as long as it takes:
   consumption pauses, nothing is committed, the projection reports why;
3. an event the stores refuse (a deterministic failure) is tried alone up to
   `max_attempts` times, then dead-lettered with the reason;
4. the applied (and dead-lettered) positions are marked for the position tracker;
5. only then does the caller commit the Kafka offsets.

A crash anywhere before 5 means the batch is delivered again; every write is
version-guarded, so applying it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import elastic_transport
from eventstore import EventRegistry, StoreUnavailable, category_of
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opentelemetry import trace
from readmodels.search import SearchUnavailable
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from servicekit.telemetry import context_of

from projector_service.deadletters import DeadLetterWriter, KafkaRecord
from projector_service.events import ProjectedEvent, UndecodableEvent, from_headers
from projector_service.progress import ProgressTracker
from projector_service.projections import Projection
from projector_service.status import ProjectionStatus, ProjectorMetrics

__all__ = ["TRANSIENT", "BatchRunner", "retry_transient"]

log = logging.getLogger(__name__)

# Failures of a store, not of the event: retry the batch, never dead-letter for these.
TRANSIENT: tuple[type[BaseException], ...] = (
    SearchUnavailable,
    OpenSearchConnectionError,  # includes its timeouts
    elastic_transport.TransportError,  # connection errors and timeouts (API errors are not these)
    RedisConnectionError,
    RedisTimeoutError,
    StoreUnavailable,
    OSError,
    TimeoutError,
)


async def retry_transient[T](
    operation: Callable[[], Awaitable[T]],
    status: ProjectionStatus,
    *,
    max_backoff: float,
    on_pause: Callable[[bool], None] | None = None,
) -> T:
    """Run `operation` until it succeeds, sleeping with full jitter after each transient failure."""
    attempt = 0
    while True:
        try:
            result = await operation()
        except TRANSIENT as error:
            status.paused(error)
            if on_pause is not None:
                on_pause(True)
            if attempt == 0:
                log.warning("%s: store unavailable, pausing: %s", status.name, status.unavailable)
            delay = random.uniform(0, min(max_backoff, 0.05 * 2**attempt))
            attempt += 1
            await asyncio.sleep(delay)
            continue
        if attempt and on_pause is not None:
            on_pause(False)
        if attempt:
            log.info("%s: stores are back after %d retries", status.name, attempt)
        return result


class BatchRunner:
    """Applies batches of records to one projection (see the module docstring)."""

    def __init__(
        self,
        projection: Projection,
        tracker: ProgressTracker,
        dead_letters: DeadLetterWriter,
        registry: EventRegistry,
        status: ProjectionStatus,
        metrics: ProjectorMetrics,
        *,
        max_attempts: int,
        max_backoff: float,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.projection = projection
        self._tracer = tracer or trace.get_tracer("projector")
        self.tracker = tracker
        self._dead_letters = dead_letters
        self._registry = registry
        self.status = status
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff

    async def handle(self, records: Sequence[KafkaRecord]) -> None:
        """Apply one batch; returns once its effects are durable (then commit the offsets)."""
        events: list[tuple[KafkaRecord, ProjectedEvent]] = []
        poison: list[tuple[KafkaRecord, str, int | None]] = []
        for record in records:
            try:
                event = from_headers(self._registry, record.headers, record.value)
            except UndecodableEvent as error:
                poison.append((record, str(error), _position(record)))
                continue
            if category_of(event.stream_id) in self.projection.categories:
                events.append((record, event))
        spans = [self._span(event) for _, event in events]
        try:
            failed = await self._apply([event for _, event in events])
            for record, event in events:
                if event.event_id in failed:
                    poison.append((record, failed[event.event_id], event.position))
        finally:
            for span in spans:
                span.end()
        for record, reason, _ in poison:
            await retry_transient(
                lambda r=record, why=reason: self._dead_letters.send(  # type: ignore[misc]
                    r, projection=self.projection.name, error=why, attempts=self._max_attempts
                ),
                self.status,
                max_backoff=self._max_backoff,
            )
            log.error("%s: dead-lettered %s: %s", self.projection.name, _where(record), reason)
        # Dead letters count as handled: the position moves past them (docs/projector.md).
        positions = [event.position for _, event in events]
        positions += [position for _, _, position in poison if position is not None]
        await retry_transient(
            lambda: self.tracker.mark_applied(positions), self.status, max_backoff=self._max_backoff
        )
        self.status.applied(len(events))
        self.status.dead_letters += len(poison)
        self._metrics.events.labels(self.projection.name).inc(len(events))
        if poison:
            self._metrics.dead_letters.labels(self.projection.name).inc(len(poison))
        self._metrics.store_up.labels(self.projection.name).set(1)

    async def _apply(self, events: Sequence[ProjectedEvent]) -> dict[str, str]:
        """Apply with retries: transient failures forever, an event's own failure `max_attempts` times."""
        if not events:
            return {}
        failed = await self._apply_once(events)
        attempts = 1
        while failed and attempts < self._max_attempts:
            attempts += 1
            again = [event for event in events if event.event_id in failed]
            failed = await self._apply_once(again)
        return failed

    async def _apply_once(self, events: Sequence[ProjectedEvent]) -> dict[str, str]:
        async def attempt() -> dict[str, str]:
            generations = await self.projection.targets()
            return await self.projection.apply(events, generations)

        def paused(down: bool) -> None:
            self._metrics.store_up.labels(self.projection.name).set(0 if down else 1)

        return await retry_transient(attempt, self.status, max_backoff=self._max_backoff, on_pause=paused)

    def _span(self, event: ProjectedEvent) -> Any:
        # Each event's span continues the trace of the request that caused it.
        span = self._tracer.start_span(
            f"project {event.event_type}",
            context=context_of(event.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "projection": self.projection.name,
                "event.stream_id": event.stream_id,
                "event.version": event.version,
                "event.position": event.position,
            },
        )
        return span


def _position(record: KafkaRecord) -> int | None:
    for name, value in record.headers:
        if name == "ce_position":
            text = value.decode("utf-8", "replace")
            return int(text) if text.isdigit() else None
    return None


def _where(record: KafkaRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"
