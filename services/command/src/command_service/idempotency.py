"""Idempotency keys in PostgreSQL: a retried command returns its first response and appends nothing.

The key row is written by the append's own statement, as an event store `Claim`
(see `eventstore.types.Claim`): one round trip, one transaction, so a key exists
exactly when its events do. The row records where the command left its stream
(stream, version, position, event types), read from the append's result, which
is everything a replayed response needs. Two requests racing with one key both
try to append, but the second's key insert waits for the first's transaction and
then finds the row taken: its claim is refused, its events go with it, and it
answers with the first's response.

Only accepted commands are remembered. A refused command appended nothing, so
repeating it is harmless, and the client gets a fresh answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec
from eventstore import Claim, translated

from command_service.errors import IdempotencyKeyReused

__all__ = ["IdempotencyKeys", "StoredOutcome", "fingerprint"]

# $1 subject, $2 key, $3 fingerprint, $4 status code, $5 time to live (s); `appended` is the event
# store's. An expired row with the same key is replaced; a live one wins and nothing is returned.
_CLAIM = """
INSERT INTO command.idempotency_keys AS k
    (subject, idempotency_key, fingerprint, status_code, stream_id, version, position, events, expires_at)
SELECT $1::text, $2::text, $3::bytea, $4::smallint, a.stream_id, a.version, a.position, a.event_types,
       now() + make_interval(secs => $5::float8)
  FROM appended a
ON CONFLICT (subject, idempotency_key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code,
        stream_id = EXCLUDED.stream_id, version = EXCLUDED.version, position = EXCLUDED.position,
        events = EXCLUDED.events, created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= now()
RETURNING 1
"""

_FIND = """
SELECT fingerprint, status_code, stream_id, version, position, events FROM command.idempotency_keys
 WHERE subject = $1 AND idempotency_key = $2 AND expires_at > now()
"""

_PURGE = """
DELETE FROM command.idempotency_keys WHERE ctid IN (
    SELECT ctid FROM command.idempotency_keys WHERE expires_at <= now() LIMIT $1
)
"""


class StoredOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The first answer to a key: its status code and where the command left its stream."""

    status_code: int
    stream_id: str
    version: int
    position: int | None
    events: list[str]


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
        self._ttl = float(ttl_seconds)

    def claim(self, subject: str, key: str, request_fingerprint: bytes, status_code: int) -> Claim:
        """The claim on the key that the command's append carries; refused if the key is taken."""
        return Claim(_CLAIM, (subject, key, request_fingerprint, status_code, self._ttl))

    async def find(self, subject: str, key: str, request_fingerprint: bytes) -> StoredOutcome | None:
        """The stored outcome of this key, or None; `IdempotencyKeyReused` if it answered another request."""
        async with translated():
            row = await self._pool.fetchrow(_FIND, subject, key)
        if row is None:
            return None
        if row["fingerprint"] != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new request"
            )
        return StoredOutcome(
            status_code=row["status_code"],
            stream_id=row["stream_id"],
            version=row["version"],
            position=row["position"],
            events=list(row["events"]),
        )

    async def purge_expired(self, *, batch: int = 10_000) -> int:
        """Delete up to `batch` expired keys; returns how many went (driver errors as `EventStoreError`)."""
        async with translated():
            result = await self._pool.execute(_PURGE, batch)
        return int(result.split()[-1])
