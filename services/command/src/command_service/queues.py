"""One queue per stream in each worker: commands on one stream run one after the other.

Without it, writers in one process race each other on a busy stream (twenty
reservations of one SKU: up to twenty rounds of load-decide-append, some ending in
409 although the stock allowed them all). Only writers in other processes still race;
the retry loop is there for them. A stream's entry is removed with its last command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["StreamQueues"]


class _Queue:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # fair: waiters are woken in the order they came
        self.users = 0


class StreamQueues:
    """Serialises the commands of this process per stream id."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    @contextlib.asynccontextmanager
    async def turn(self, stream_id: str) -> AsyncIterator[None]:
        """Wait until the commands ahead on `stream_id` are done; hold the stream until the block ends."""
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = _Queue()
        queue.users += 1
        try:
            async with queue.lock:
                yield
        finally:
            queue.users -= 1
            if queue.users == 0:
                del self._queues[stream_id]

    def __len__(self) -> int:
        """How many streams have a command running or waiting."""
        return len(self._queues)
