"""Idempotency keys: a retried command returns its first response and appends nothing.

A key is an event store `Claim` (see `eventstore.types.Claim`): the store writes it
in the append's own statement, one round trip, one transaction, so a key exists
exactly when its events do. The store records where the command left its stream
(stream, version, position, event types), which is everything a replayed response
needs besides its status, and the status is the endpoint's own: the key's
fingerprint covers method and path, so a replay reaches the endpoint that first
answered. Two requests racing with one key both try to append, but the second's
claim waits for the first's transaction and then finds the key taken: its claim is
refused, its events go with it, and it answers with the first's response.

Only accepted commands are remembered. A refused command appended nothing, so
repeating it is harmless, and the client gets a fresh answer.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import asyncpg
from eventstore import Claim, StoredClaim, purge_expired_claims, read_claim

from command_service.errors import IdempotencyKeyReused

__all__ = ["IdempotencyKeys", "fingerprint"]


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    """What identifies a request for its key: method, path and the canonical encoding of its body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class IdempotencyKeys:
    """The first outcome of each (subject, key), until `ttl_seconds` after it was stored.

    `pool` is the event store's: the keys are its claims.
    """

    def __init__(self, pool: asyncpg.Pool[Any], *, ttl_seconds: int) -> None:
        self._pool = pool
        self._ttl = timedelta(seconds=ttl_seconds)

    def claim(self, subject: str, key: str, request_fingerprint: bytes) -> Claim:
        """The claim on the key that the command's append carries; refused if the key is taken."""
        return Claim(scope=subject, key=key, fingerprint=request_fingerprint, ttl=self._ttl)

    async def find(self, subject: str, key: str, request_fingerprint: bytes) -> StoredClaim | None:
        """The stored outcome of this key, or None; `IdempotencyKeyReused` if it answered another request."""
        stored = await read_claim(self._pool, subject, key)
        if stored is not None and stored.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new request"
            )
        return stored

    async def purge_expired(self, *, batch: int = 10_000) -> int:
        """Delete up to `batch` expired keys; returns how many went (driver errors as `EventStoreError`)."""
        return await purge_expired_claims(self._pool, batch=batch)
