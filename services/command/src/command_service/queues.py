"""One queue per stream in each worker: commands on one stream run one after the other.

Optimistic concurrency lets two writers on one stream race; the loser loads the
stream again and decides again. That is cheap when races are rare and wasteful
when they are not: twenty reservations of one busy SKU at once take up to twenty
rounds of load-decide-append, each one lost by all but one writer, and with a
bounded number of attempts some of them give up with 409 although the stock
would have allowed all of them.

Inside one worker process the races need not happen at all: a command waits for
the command ahead of it on the same stream, then loads the state that command
left. Only writers in other processes still race, and the retry loop is there
for them. The queues cost a dictionary entry per stream with a command in
flight, removed when its last command is done.
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
