"""Idempotency keys: a retried command returns its first response and appends nothing.

A key is an event store `Claim`, written in the append's own statement, so it exists
exactly when its events do; it records where the command left its stream, and its
fingerprint covers method, path and body. A second request racing with the key finds it
taken and answers with the first's response. Only accepted commands are remembered:
a refused one appended nothing, so repeating it is harmless.
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
