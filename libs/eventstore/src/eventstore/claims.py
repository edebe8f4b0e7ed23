"""Reading back the claims that appends took (``Claim``), and clearing out expired ones (PostgreSQL).

The claims are written by ``PostgresEventStore.append(..., claim=)``, in the append's
own statement; these are the two other things a caller does with them, on the
store's pool (or a connection of it), as ``checkpoint_lag`` does with checkpoints.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from eventstore import queries
from eventstore.connection import translated
from eventstore.types import Connection, StoredClaim

__all__ = ["purge_expired_claims", "read_claim"]


async def read_claim(database: asyncpg.Pool[Any] | Connection, scope: str, key: str) -> StoredClaim | None:
    """The live claim of ``key`` in ``scope``, or None (never taken, or expired).

    Driver errors are raised as the store's (``StoreUnavailable`` for a lost connection).
    """
    async with translated():
        row = await database.fetchrow(queries.READ_CLAIM, scope, key)
    if row is None:
        return None
    return StoredClaim(
        scope=row["scope"],
        key=row["key"],
        fingerprint=bytes(row["fingerprint"]),
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        event_types=list(row["event_types"]),
        expires_at=row["expires_at"],
    )


async def purge_expired_claims(database: asyncpg.Pool[Any] | Connection, *, batch: int = 10_000) -> int:
    """Delete up to ``batch`` expired claims; returns how many went.

    Expired claims are already ignored by ``read_claim`` and replaced by a new claim of
    their key: purging only keeps the table small.
    """
    async with translated():
        result = await database.execute(queries.PURGE_EXPIRED_CLAIMS, batch)
    return int(result.split()[-1])
