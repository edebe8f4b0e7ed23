"""A saga's stream in the event store, written through `eventstore.execute` like every other aggregate.

Each append carries, in its own statement (an `eventstore.Call` of the saga's own
`saga.record_append`, sql/003, made from the state after the input), the saga's
summary row and its timers (`saga.sync_timers`):
a deadline exists exactly when the stream says the saga waits for one, and the
admin list never lags the stream. The states this process loaded or wrote stay
in a `StateCache`, so a load reads only the events appended since.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from eventstore import Call, Decider, Metadata, PostgresEventStore, RecordedEvent, StateCache, execute, load

from saga_service.events import SagaEvent, saga_stream
from saga_service.evolve import evolve
from saga_service.inputs import SagaInput
from saga_service.state import Saga
from saga_service.timers import Timers

__all__ = ["Applied", "SagaStreams", "SagaSummary"]

# Sagas racing on one stream (an answer, a webhook, a deadline) decide again on the newer state.
MAX_ATTEMPTS = 10

# The saga's function that writes the summary row, then the timers, once the append went through
# (sql/003); it always returns true, so the append is never refused.
_RECORD_APPEND = "saga.record_append"

# Sagas whose first event's traceparent is kept in memory (as many as the states cache keeps).
_TRACES_KEPT = 10_000


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """The saga after an input: its state, its stream version, the events the input caused."""

    state: Saga | None
    version: int
    events: Sequence[SagaEvent]


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
    """The saga's streams, their summary table and their states cache, on one pool."""

    def __init__(
        self,
        store: PostgresEventStore,
        timers: Timers,
        decide: Callable[[Saga | None, SagaInput], Sequence[SagaEvent]],
        *,
        cache: StateCache | None = None,
    ) -> None:
        self.store = store
        self.pool: asyncpg.Pool[Any] = store.pool
        self.timers = timers
        self.decider: Decider[Saga | None, SagaInput, SagaEvent] = Decider(
            initial_state=None, decide=decide, evolve=evolve
        )
        self.cache = cache if cache is not None else StateCache()
        # The trace of each saga's first event, which never changes: one read per saga at most.
        self._traceparents: OrderedDict[UUID, str | None] = OrderedDict()

    async def read(self, order_id: UUID) -> list[RecordedEvent]:
        """The saga's history, oldest first."""
        return await self.store.read_stream(saga_stream(order_id))

    async def load(self, order_id: UUID) -> Applied:
        """The saga's current state and version (-1 and None for a saga not started)."""
        loaded = await load(self.store, self.decider, saga_stream(order_id), cache=self.cache)
        return Applied(state=loaded.state, version=loaded.version, events=[])

    async def current(self, order_id: UUID) -> Applied:
        """The saga as this process last saw it (a load if it has not): for driving a saga this
        process just recorded an input of. Another instance's write since makes the next append
        conflict, and that input is then decided again on the stream as it is."""
        cached = self.cache.get(self.decider, saga_stream(order_id))
        if cached is None:
            return await self.load(order_id)
        return Applied(state=cached.state, version=cached.version, events=[])

    async def traceparent(self, order_id: UUID) -> str | None:
        """The trace of the order that started the saga (its first event keeps it)."""
        if order_id in self._traceparents:
            self._traceparents.move_to_end(order_id)
            return self._traceparents[order_id]
        first = await self.store.read_stream(saga_stream(order_id), 0, limit=1)
        if not first:
            return None
        self._remember_trace(order_id, first[0].metadata.traceparent)
        return first[0].metadata.traceparent

    def _remember_trace(self, order_id: UUID, traceparent: str | None) -> None:
        self._traceparents[order_id] = traceparent
        while len(self._traceparents) > _TRACES_KEPT:
            self._traceparents.popitem(last=False)

    async def apply(
        self,
        order_id: UUID,
        command: SagaInput,
        *,
        metadata: Metadata | None = None,
        fired_timer: str | None = None,
    ) -> Applied:
        """Decide `command` on the saga and append what it decides; `fired_timer` is marked fired with it.
        Raises `SagaRefused` when the state refuses the input."""
        after: list[Saga | None] = []

        def record(state: Saga | None, events: Sequence[SagaEvent]) -> Call | None:
            after[:] = [state]  # the last attempt's is the one appended
            if not events or state is None:
                return None
            return Call(_RECORD_APPEND, (*_summary(state), *self.timers.sync_arguments(state, fired_timer)))

        executed = await execute(
            self.store,
            self.decider,
            saga_stream(order_id),
            command,
            metadata=metadata,
            claim=record,
            max_attempts=MAX_ATTEMPTS,
            cache=self.cache,
        )
        if executed.events and executed.version == len(executed.events) - 1:
            self._remember_trace(order_id, metadata.traceparent if metadata else None)
        if not executed.events and fired_timer is not None:
            # It fired before (a second claimer after an expired lease) or finds nothing to do.
            await self.timers.mark_fired(order_id, fired_timer)
        return Applied(state=after[-1], version=executed.version, events=executed.events)

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


def _summary(saga: Saga) -> tuple[Any, ...]:
    parked = saga.parked
    return (
        saga.order_id,
        str(saga.phase),
        None if saga.outcome is None else str(saga.outcome),
        saga.reason,
        None if parked is None else parked.step.encode(),
        None if parked is None else parked.code,
    )
