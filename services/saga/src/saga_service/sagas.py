"""Saga streams in the event store: load, decide, append, with the saga's table rows in the same transaction.

`SagaStreams.apply` is the saga's load-decide-append loop. It is not
`eventstore.execute` because the append shares its transaction with the saga's
timers and its summary row (see `saga_service.timers`): a deadline exists
exactly when the stream says the saga waits for one. A lost race reloads and
decides again, so of two instances acting on one saga only one moves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from eventstore import ConcurrencyError, Metadata, NewEvent, PostgresEventStore, RecordedEvent

from saga_service.events import SagaEvent, saga_stream
from saga_service.saga import Saga, SagaInput, evolve
from saga_service.timers import Timers

__all__ = ["Applied", "SagaStreams", "SagaSummary"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """The saga after an input: its state, its stream version, the events the input caused."""

    state: Saga | None
    version: int
    events: list[SagaEvent]
    traceparent: str | None


class SagaSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the admin API's list."""

    saga_id: UUID
    phase: str
    outcome: str | None
    reason: str | None
    parked_step: str | None
    parked_code: str | None
    version: int
    started_at: datetime
    updated_at: datetime


class SagaStreams:
    """The saga's streams and its summary table, on one pool."""

    def __init__(
        self,
        store: PostgresEventStore,
        timers: Timers,
        decide: Callable[[Saga | None, SagaInput], Sequence[SagaEvent]],
    ) -> None:
        self.store = store
        self.pool: asyncpg.Pool[Any] = store.pool
        self.timers = timers
        self._decide = decide

    async def read(self, order_id: UUID) -> list[RecordedEvent]:
        """The saga's history, oldest first."""
        return await self.store.read_stream(saga_stream(order_id))

    async def load(self, order_id: UUID) -> Applied:
        """The saga's current state and version (-1 and None for a saga not started)."""
        history = await self.read(order_id)
        state: Saga | None = None
        for recorded in history:
            state = evolve(state, recorded.data)  # type: ignore[arg-type]
        traceparent = history[0].metadata.traceparent if history else None
        return Applied(
            state=state, version=history[-1].version if history else -1, events=[], traceparent=traceparent
        )

    async def apply(
        self,
        order_id: UUID,
        command: SagaInput,
        *,
        metadata: Metadata | None = None,
        fired_timer: str | None = None,
    ) -> Applied:
        """Decide `command` on the saga and append what it decides; `fired_timer` is marked in the same
        transaction. Raises `SagaRefused` when the state refuses an operator's request."""
        stream_id = saga_stream(order_id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            current = await self.load(order_id)
            decided = list(self._decide(current.state, command))
            if not decided:
                if fired_timer is not None:
                    await self.timers.mark_fired(order_id, fired_timer)
                return current
            state = current.state
            for event in decided:
                state = evolve(state, event)
            assert state is not None
            new_events = [NewEvent(data=event, metadata=metadata or Metadata()) for event in decided]
            try:
                async with self.pool.acquire() as connection, connection.transaction():
                    result = await self.store.append(
                        stream_id, new_events, current.version, connection=connection
                    )
                    await self._summarise(connection, state, result.version)
                    await self.timers.sync(connection, state)
                    if fired_timer is not None:
                        await self.timers.mark_fired(order_id, fired_timer, connection)
            except ConcurrencyError:
                log.debug("%s moved on while deciding; attempt %d", stream_id, attempt)
                continue
            traceparent = current.traceparent or (metadata.traceparent if metadata else None)
            return Applied(state=state, version=result.version, events=decided, traceparent=traceparent)
        raise ConcurrencyError(stream_id, -1, -1, "the saga kept changing while deciding")

    async def _summarise(self, connection: Any, saga: Saga, version: int) -> None:
        parked = saga.parked
        await connection.execute(
            """
            INSERT INTO saga.sagas (saga_id, phase, outcome, reason, parked_step, parked_code, version)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (saga_id) DO UPDATE
               SET phase = EXCLUDED.phase, outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,
                   parked_step = EXCLUDED.parked_step, parked_code = EXCLUDED.parked_code,
                   version = EXCLUDED.version, updated_at = now()
            """,
            saga.order_id,
            str(saga.phase),
            None if saga.outcome is None else str(saga.outcome),
            saga.reason,
            None if parked is None else parked.step,
            None if parked is None else parked.code,
            version,
        )

    async def listing(self, which: str, *, stuck_after: float, limit: int = 100) -> list[SagaSummary]:
        """Sagas that need a look: `parked`, `stuck` (unfinished, unchanged for `stuck_after` seconds),
        `failed` (rejected or aborted), or `open` (unfinished)."""
        where = {
            "parked": "parked_step IS NOT NULL",
            "stuck": "phase <> 'done' AND parked_step IS NULL"
            " AND updated_at < now() - make_interval(secs => $2)",
            "failed": "outcome IN ('rejected', 'aborted')",
            "open": "phase <> 'done'",
        }[which]
        rows = await self.pool.fetch(
            f"""
            SELECT saga_id, phase, outcome, reason, parked_step, parked_code, version, started_at, updated_at
              FROM saga.sagas WHERE {where} ORDER BY updated_at LIMIT $1
            """,
            limit,
            *([stuck_after] if which == "stuck" else []),
        )
        return [SagaSummary(**dict(row)) for row in rows]
