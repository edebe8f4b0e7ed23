"""Helpers for tests of the command service and of services that call it (tokens, headers, reading events)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from eventstore.store import EventStore
from eventstore.types import RecordedEvent
from litestar import Litestar

from command_service.tokens import mint

__all__ = [
    "ORDER_BODY",
    "StoreReader",
    "TokenFactory",
    "command_headers",
    "lifespan_of",
    "token_factory",
]

ORDER_BODY: dict[str, Any] = {
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
    "currency": "EUR",
}


class TokenFactory(Protocol):
    def __call__(
        self, subject: str | None = None, roles: Sequence[str] = ("customer",), **claims: Any
    ) -> str: ...


def token_factory(*, secret: str, issuer: str, audience: str) -> TokenFactory:
    """Mints HS256 tokens.

    Keyword overrides: issuer, audience, key, algorithm, ttl_seconds, now, kid; other keywords become claims.
    """

    def token(subject: str | None = None, roles: Sequence[str] = ("customer",), **claims: Any) -> str:
        return mint(
            subject=subject or f"user-{uuid.uuid4().hex[:8]}",
            roles=roles,
            issuer=claims.pop("issuer", issuer),
            audience=claims.pop("audience", audience),
            key=claims.pop("key", secret),
            algorithm=claims.pop("algorithm", "HS256"),
            ttl_seconds=claims.pop("ttl_seconds", 600),
            now=claims.pop("now", None),
            kid=claims.pop("kid", None),
            extra_claims=claims or None,
        )

    return token


def command_headers(token: str, key: str | None = None, **extra: str) -> dict[str, str]:
    """Authorization and an Idempotency-Key (a fresh one unless given), plus `extra` headers."""
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key or str(uuid.uuid4()), **extra}


class StoreReader:
    """Reads what the service wrote."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def events(self, stream_id: str) -> list[RecordedEvent]:
        events: list[RecordedEvent] = await self.store.read_stream(stream_id)
        return events

    async def event_types(self, stream_id: str) -> list[str]:
        return [event.event_type for event in await self.events(stream_id)]


@contextlib.asynccontextmanager
async def lifespan_of(app: Litestar) -> AsyncIterator[None]:
    """Runs the app's lifespan in a task of its own: its cancel scopes must start and end in one task,
    while pytest-asyncio sets a fixture up and tears it down in different ones."""
    started, stopping = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stopping.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stopping.set()
        await task
