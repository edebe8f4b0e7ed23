"""Reading a stream's past from the event store, to fill a gap in a read model.

Kafka delivers a stream's events in order, so a live projector never meets a gap.
A rebuild writing into the same new generation as the live consumer can: the
live consumer may meet an order whose earlier events the rebuild has not reached
yet. Rather than wait, the writer reads the missing events from the store (the
source of truth) and applies them first.
"""

from __future__ import annotations

from eventstore import EventStore

from projector_service.events import ProjectedEvent, from_recorded

__all__ = ["StreamHistory"]


class StreamHistory:
    """The events of one stream between two versions, from the store."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def between(self, stream_id: str, first: int, last: int) -> list[ProjectedEvent]:
        """Events `first..last` (inclusive) of `stream_id`, in version order."""
        if last < first:
            return []
        events = await self._store.read_stream(stream_id, max(first, 0), limit=last - max(first, 0) + 1)
        return [from_recorded(event) for event in events]
