"""Idempotency keys in PostgreSQL: a retried command returns its first response and appends nothing.

The key row is written in the same transaction as the command's events, after
the append (the event store wants its append first in a shared transaction, see
`eventstore.errors.TransactionOrderConflict`). So a key exists exactly when its
events do: a crash between the two cannot leave events without their key, or a
key without its events. Two requests racing with one key both append, but the
second's key insert waits for the first's transaction and then finds the row
taken; the second rolls back (taking its events with it) and answers with the
first's response.

Only accepted commands are remembered. A refused command appended nothing, so
repeating it is harmless, and the client gets a fresh answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec
from eventstore.types import Connection

from command_service.errors import IdempotencyKeyReused

__all__ = ["IdempotencyKeys", "StoredResponse", "fingerprint"]


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    fingerprint: bytes
    status_code: int
    body: bytes


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    """What identifies a request for its key: method, path and the canonical encoding of its body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class IdempotencyKeys:
    """The first response to each (subject, key), until `ttl_seconds` after it was given."""

    def __init__(self, pool: asyncpg.Pool[Any], *, ttl_seconds: int) -> None:
        self._pool = pool
        self._ttl = ttl_seconds

    async def find(self, subject: str, key: str, request_fingerprint: bytes) -> StoredResponse | None:
        """The stored response to this key, or None; `IdempotencyKeyReused` if it answered another request."""
        row = await self._pool.fetchrow(
            """
            SELECT fingerprint, status_code, response FROM command.idempotency_keys
            WHERE subject = $1 AND idempotency_key = $2 AND expires_at > now()
            """,
            subject,
            key,
        )
        if row is None:
            return None
        stored = StoredResponse(
            fingerprint=row["fingerprint"], status_code=row["status_code"], body=row["response"]
        )
        if stored.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new request"
            )
        return stored

    async def claim(self, connection: Connection, subject: str, key: str, response: StoredResponse) -> bool:
        """Record the response inside the caller's transaction; False if the key is already taken."""
        # An expired row with the same key is replaced; a live one wins and this insert does nothing.
        row = await connection.fetchrow(
            """
            INSERT INTO command.idempotency_keys
                (subject, idempotency_key, fingerprint, status_code, response, expires_at)
            VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
            ON CONFLICT (subject, idempotency_key) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code,
                    response = EXCLUDED.response, created_at = now(), expires_at = EXCLUDED.expires_at
                WHERE command.idempotency_keys.expires_at <= now()
            RETURNING 1
            """,
            subject,
            key,
            response.fingerprint,
            response.status_code,
            response.body,
            float(self._ttl),
        )
        return row is not None

    async def purge_expired(self, *, batch: int = 10_000) -> int:
        """Delete up to `batch` expired keys; returns how many went."""
        result = await self._pool.execute(
            """
            DELETE FROM command.idempotency_keys WHERE ctid IN (
                SELECT ctid FROM command.idempotency_keys WHERE expires_at <= now() LIMIT $1
            )
            """,
            batch,
        )
        return int(result.split()[-1])
