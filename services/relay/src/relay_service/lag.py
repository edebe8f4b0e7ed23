"""How far the relay is behind the log, in events and in seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec
from eventstore.queries import HORIZON

__all__ = ["Lag", "measure_lag"]

# Counting is exact up to this many unpublished events, then reported as "at least".
COUNT_CAP = 1_000_000


class Lag(msgspec.Struct, frozen=True):
    events: int
    seconds: float


async def measure_lag(pool: asyncpg.Pool, checkpoint: str) -> Lag:
    """Events visible in the log after the relay's checkpoint, and the age of the oldest one."""
    # Same visibility rule as the store's readers (the log horizon), so the lag never
    # counts transactions the relay may not publish yet.
    row = await pool.fetchrow(
        f"""
        WITH cursor AS (
            SELECT coalesce(max(transaction_id), '0'::xid8) AS tx, coalesce(max(position), 0) AS pos
              FROM eventstore.checkpoints WHERE name = $1
        ), pending AS (
            SELECT e.recorded_at FROM eventstore.events e, cursor c
             WHERE (e.transaction_id, e.position) > (c.tx, c.pos)
               AND e.transaction_id < {HORIZON}
             ORDER BY e.transaction_id, e.position
             LIMIT $2
        )
        SELECT count(*) AS events, min(recorded_at) AS oldest FROM pending
        """,
        checkpoint,
        COUNT_CAP,
    )
    assert row is not None
    oldest: datetime | None = row["oldest"]
    seconds = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    return Lag(events=int(row["events"]), seconds=round(seconds, 3))
