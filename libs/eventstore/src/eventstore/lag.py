"""How far a subscriber's checkpoint is behind the global log, in events and in seconds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from eventstore import queries
from eventstore.connection import translated
from eventstore.types import Connection

__all__ = ["COUNT_CAP", "Lag", "checkpoint_lag"]

# Counting is exact up to this many pending events, then reported as "at least".
COUNT_CAP = 1_000_000


class Lag(msgspec.Struct, frozen=True):
    """Events visible after a checkpoint (at most ``COUNT_CAP``), and the age of the oldest in seconds."""

    events: int
    seconds: float


async def checkpoint_lag(
    database: asyncpg.Pool[Any] | Connection,
    name: str,
    *,
    count_cap: int = COUNT_CAP,
    categories: Sequence[str] | None = None,
) -> Lag:
    """How far the checkpoint ``name`` is behind the log head (no checkpoint: the whole log).

    Counts only what a reader may already be handed (below the log horizon), so a
    subscriber that is caught up reports 0 even while transactions are running.
    With ``categories``, only events of those categories count: a reader that
    subscribes to some categories never moves its checkpoint past the others'
    events at the head of the log, which are no lag of its. ``database`` is a pool
    or a connection; driver errors come out as ``EventStoreError``
    (``StoreUnavailable`` when the database is unreachable).
    """
    async with translated():
        if categories is None:
            row = await database.fetchrow(queries.CHECKPOINT_LAG, name, count_cap)
        else:
            row = await database.fetchrow(
                queries.CHECKPOINT_LAG_CATEGORIES, name, count_cap, list(categories)
            )
    assert row is not None
    oldest: datetime | None = row["oldest"]
    seconds = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    return Lag(events=int(row["events"]), seconds=round(seconds, 3))
