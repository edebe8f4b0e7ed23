"""Helpers for tests of the command service and of services that call it (headers, bodies, reading events).

Tokens, processes and app lifespans come from `servicekit.testing`.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventstore.store import EventStore
from eventstore.types import RecordedEvent

__all__ = ["ORDER_BODY", "StoreReader", "command_headers"]

ORDER_BODY: dict[str, Any] = {
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
    "currency": "EUR",
}


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
