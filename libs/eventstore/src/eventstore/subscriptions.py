"""Following the global log: catch up in pages, then wait for notifications (or poll).

A subscription is a loop over gap-safe ``read_all`` pages, so it inherits the log's
guarantee: every event exactly once, in log order, none skipped. Notifications only
decide *when* to read next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from eventstore.notifications import Listener, Waker
from eventstore.types import LogPosition, RecordedEvent, StoredEvent

__all__ = ["PageReader", "follow_log"]

# A page of the log after a position, with the log horizon of the snapshot it was read in;
# its events decoded (RecordedEvent) or not (StoredEvent).
type PageReader[E: (RecordedEvent, StoredEvent)] = Callable[
    [LogPosition, int], Awaitable[tuple[list[E], int]]
]

# While an announced transaction is not yet below the horizon, re-read on this
# backoff rather than the poll interval: the wait is usually a commit in flight.
_FIRST_RETRY = 0.001
_MAX_RETRY = 0.01


async def follow_log[E: (RecordedEvent, StoredEvent)](
    read_page: PageReader[E],
    listener: Listener,
    after: LogPosition,
    *,
    categories: Sequence[str] | None,
    poll_interval: float,
    batch_size: int,
) -> AsyncIterator[E]:
    """Yield every event after ``after``, forever, woken by ``listener`` or the poll interval."""
    if poll_interval <= 0 or batch_size < 1:
        raise ValueError("poll_interval must be > 0 and batch_size >= 1")
    waker = Waker(categories)
    # Listen before the first read: whatever commits after it is announced to us,
    # whatever committed before it is found by the read.
    await listener.register(waker)
    retry = _FIRST_RETRY
    try:
        while True:
            waker.event.clear()
            page, horizon = await read_page(after, batch_size)
            for event in page:
                after = event.log_position
                yield event
            if len(page) == batch_size:
                continue
            pending = waker.pending_transaction_id
            if pending is not None and horizon > pending:
                # Every announced transaction had finished when this page was read.
                waker.pending_transaction_id = pending = None
            if pending is None:
                timeout, retry = poll_interval, _FIRST_RETRY
            else:
                timeout, retry = min(retry, poll_interval), min(retry * 2, _MAX_RETRY)
            if not waker.event.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.event.wait(), timeout)
            await listener.ensure_listening()
    finally:
        await listener.unregister(waker)
