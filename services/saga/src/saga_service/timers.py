"""Durable timers in PostgreSQL: payment deadlines and the wake-ups of sagas with work left to do.

A timer is a row (`saga.timers`, one per saga and kind), claimed with `FOR UPDATE
SKIP LOCKED` and a lease, in a claim that commits at once; a dead claimer's rows are
claimed again when the lease runs out. Firing once is the saga stream's job (a
`DeadlineFired` appended at the loaded version). Rows change in the statement of
the saga's append (`saga.sync_timers`). See docs/saga.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from saga_service.state import Phase, Saga, next_step

__all__ = ["WAKE", "DueTimer", "TimerRow", "Timers"]

WAKE = "wake"

_CLAIM = """
UPDATE saga.timers AS t
   SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
  FROM (SELECT saga_id, kind FROM saga.timers
         WHERE due_at <= now() AND fired_at IS NULL AND cancelled_at IS NULL
           AND (claimed_until IS NULL OR claimed_until < now())
         ORDER BY due_at
         LIMIT $3
           FOR UPDATE SKIP LOCKED) AS due
 WHERE t.saga_id = due.saga_id AND t.kind = due.kind
RETURNING t.saga_id, t.kind, t.due_at, t.attempts
"""


class DueTimer(msgspec.Struct, frozen=True, kw_only=True):
    """A timer this instance claimed."""

    saga_id: UUID
    kind: str
    due_at: datetime
    attempts: int


class TimerRow(msgspec.Struct, frozen=True, kw_only=True):
    """A timer as the admin API shows it."""

    kind: str
    due_at: datetime
    attempts: int
    claimed_by: str | None
    fired_at: datetime | None
    fired_by: str | None
    cancelled_at: datetime | None


class Timers:
    """The timer table, for one instance (`owner` names it in claims)."""

    def __init__(
        self, pool: asyncpg.Pool[Any], *, owner: str, lease_seconds: float, wake_grace: float
    ) -> None:
        self._pool = pool
        self.owner = owner
        self._lease = lease_seconds
        self._grace = wake_grace

    def sync_arguments(self, saga: Saga, fired: str | None) -> tuple[Any, ...]:
        """The arguments of `saga.sync_timers` (sql/002) after the saga's id, for the saga's append (its
        `saga.record_append`, sql/003, passes them on): its payment deadline while it waits for the
        provider, its wake-up while it has a step to send, `fired` marked."""
        paying = saga.phase is Phase.PAYING and saga.payment_due_at is not None
        due_at = saga.payment_due_at if paying else None
        return (due_at, next_step(saga) is not None, self._grace, fired, self.owner)

    async def claim(self, limit: int) -> list[DueTimer]:
        """Claim up to `limit` due timers no live instance holds, earliest first."""
        rows = await self._pool.fetch(_CLAIM, self.owner, self._lease, limit)
        return [DueTimer(**dict(row)) for row in rows]

    async def mark_fired(self, saga_id: UUID, kind: str) -> None:
        """Record that this instance fired the timer when firing it appended nothing (else the append did)."""
        await self._pool.execute(
            """
            UPDATE saga.timers SET fired_at = now(), fired_by = $3, claimed_until = NULL
             WHERE saga_id = $1 AND kind = $2 AND fired_at IS NULL
            """,
            saga_id,
            kind,
            self.owner,
        )

    async def retry_later(self, saga_id: UUID, delay_seconds: float) -> None:
        """A wake-up whose work failed again: due after `delay_seconds`, counted in `attempts`."""
        await self._pool.execute(
            """
            INSERT INTO saga.timers (saga_id, kind, due_at, attempts)
            VALUES ($1, $2, now() + make_interval(secs => $3), 1)
            ON CONFLICT (saga_id, kind) DO UPDATE
               SET due_at = EXCLUDED.due_at, attempts = saga.timers.attempts + 1,
                   claimed_by = NULL, claimed_until = NULL
            """,
            saga_id,
            WAKE,
            delay_seconds,
        )

    async def clear_wake(self, saga_id: UUID) -> None:
        """Drop the wake-up this instance claimed and served (unless an append re-armed it since)."""
        await self._pool.execute(
            "DELETE FROM saga.timers WHERE saga_id = $1 AND kind = $2 AND claimed_by = $3",
            saga_id,
            WAKE,
            self.owner,
        )

    async def postpone(self, saga_id: UUID, kind: str, delay_seconds: float) -> None:
        """A due timer whose firing failed: nobody claims it again for `delay_seconds` (its due time,
        which the API shows, stays as it was)."""
        await self._pool.execute(
            """
            UPDATE saga.timers
               SET claimed_by = NULL, claimed_until = now() + make_interval(secs => $3),
                   attempts = attempts + 1
             WHERE saga_id = $1 AND kind = $2
            """,
            saga_id,
            kind,
            delay_seconds,
        )

    async def of(self, saga_id: UUID) -> list[TimerRow]:
        """Every timer of one saga, pending or not."""
        rows = await self._pool.fetch(
            """
            SELECT kind, due_at, attempts, claimed_by, fired_at, fired_by, cancelled_at
              FROM saga.timers WHERE saga_id = $1 ORDER BY created_at
            """,
            saga_id,
        )
        return [TimerRow(**dict(row)) for row in rows]
