"""One batch of Kafka records through one projection: decode, apply, dead-letter, mark.

The order makes it at-least-once without loss: (1) decode each record; one that is
malformed, unknown, or not in the store where it claims is poison; (2) apply the
events to every target generation, retrying the whole batch with backoff while a
store is unreachable; (3) try an event a store refuses alone up to `max_attempts`
times, then dead-letter it; (4) dead-letter the poison (log line, counter) and mark
the applied positions for the tracker; (5) only then the caller commits offsets. A
crash before (5) redelivers the batch, and version-guarded writes make that harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from eventstore import TRANSIENT as STORE_TRANSIENT
from eventstore import EventRegistry, category_of
from eventstore.types import Pool
from fulfilment.records import Envelope
from opentelemetry import trace
from readmodels.redis_reads import REDIS_TRANSIENT
from readmodels.search import SEARCH_TRANSIENT
from servicekit.telemetry import context_of

from projector_service.deadletters import DeadLetterWriter, KafkaRecord
from projector_service.events import (
    ProjectedEvent,
    StoredClaim,
    UndecodableEvent,
    claim_holds,
    from_record,
    stored_claims,
)
from projector_service.progress import ProgressTracker
from projector_service.projections import Projection
from projector_service.status import ProjectionStatus, ProjectorMetrics

__all__ = ["TRANSIENT", "BatchRunner", "retry_transient"]

log = logging.getLogger(__name__)

# Failures of a store, not of the event: retry the batch, never dead-letter for these.
TRANSIENT: tuple[type[BaseException], ...] = (
    *SEARCH_TRANSIENT,
    *REDIS_TRANSIENT,
    *STORE_TRANSIENT,
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
        pool: Pool,
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
        self._pool = pool  # the event store's: the records' claims are checked against it
        self.status = status
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff

    async def handle(self, records: Sequence[KafkaRecord]) -> None:
        """Apply one batch; returns once its effects are durable (then commit the offsets)."""
        decoded: list[tuple[KafkaRecord, ProjectedEvent]] = []
        poison: list[_Poison] = []
        for record in records:
            try:
                event = from_record(self._registry, record.key, record.headers, record.value)
            except UndecodableEvent as error:
                poison.append(_Poison(record, error.reason, error.detail, error.envelope))
                continue
            if category_of(event.stream_id) in self.projection.categories:
                decoded.append((record, event))
        claims = await self._claims([event.event_id for _, event in decoded], poison)
        events: list[tuple[KafkaRecord, ProjectedEvent]] = []
        for record, event in decoded:
            if claim_holds(claims, event.event_id, event.stream_id, event.version, event.position):
                events.append((record, event))
            else:
                poison.append(_Poison(record, "not-in-store", _not_stored(event.event_id, event.position)))
        spans = [self._span(event) for _, event in events]
        try:
            failed = await self._apply([event for _, event in events])
            for record, event in events:
                if event.event_id in failed:
                    poison.append(_Poison(record, "refused", failed[event.event_id], position=event.position))
        finally:
            for span in spans:
                span.end()
        for letter in poison:
            await self._dead_letter(letter, claims)
        # Dead letters count as handled: the position moves past them (docs/projector.md), but only
        # past positions the store confirms; a record's claim alone never moves it.
        positions = [event.position for _, event in events]
        positions += [letter.position for letter in poison if letter.position is not None]
        await retry_transient(
            lambda: self.tracker.mark_applied(positions), self.status, max_backoff=self._max_backoff
        )
        self.status.applied(len(events))
        self.status.dead_letters += len(poison)
        self._metrics.events.labels(self.projection.name).inc(len(events))
        self._metrics.store_up.labels(self.projection.name).set(1)

    async def _claims(self, event_ids: list[str], poison: list[_Poison]) -> dict[str, StoredClaim]:
        """What the store holds of the batch's events, and of the unreadable records whose headers
        could be read (a real event the projector cannot decode still counts as handled)."""
        ids = event_ids + [str(letter.envelope.event_id) for letter in poison if letter.envelope]
        if not ids:
            return {}
        return await retry_transient(
            lambda: stored_claims(self._pool, ids), self.status, max_backoff=self._max_backoff
        )

    async def _dead_letter(self, letter: _Poison, claims: dict[str, StoredClaim]) -> None:
        envelope = letter.envelope
        if envelope is not None and claim_holds(
            claims, str(envelope.event_id), envelope.stream_id, envelope.version, envelope.position
        ):
            letter.position = envelope.position
        await retry_transient(
            lambda: self._dead_letters.send(
                letter.record,
                projection=self.projection.name,
                reason=letter.reason,
                error=letter.detail,
                attempts=self._max_attempts if letter.reason == "refused" else 1,
            ),
            self.status,
            max_backoff=self._max_backoff,
        )
        log.error(
            "%s: dead-lettered %s (%s): %s",
            self.projection.name,
            _where(letter.record),
            letter.reason,
            letter.detail,
        )
        self._metrics.dead_letters.labels(self.projection.name, letter.reason).inc()

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


class _Poison:
    """A record the projection gives up on: why (`reason` is the metric's class), and the position
    it may mark as handled (only one the store confirms)."""

    def __init__(
        self,
        record: KafkaRecord,
        reason: str,
        detail: str,
        envelope: Envelope | None = None,
        *,
        position: int | None = None,
    ) -> None:
        self.record = record
        self.reason = reason
        self.detail = detail
        self.envelope = envelope
        self.position = position


def _not_stored(event_id: str, position: int) -> str:
    return f"the event store holds no event {event_id} at position {position} of that stream and version"


def _where(record: KafkaRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"
