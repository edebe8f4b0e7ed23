"""Waking subscribers with LISTEN/NOTIFY on the ``eventstore_events`` channel.

Appends are announced after they return, from the ``Notifier``'s own tiny transaction,
never inside the append's: PostgreSQL serialises the commits of every transaction that
issued NOTIFY (``PreCommit_Notify``), which defeats group commit. Payload:
``"{category}:{transaction_id}"``. See ``docs/event-store.md``, "How a subscriber wakes up".
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg
import asyncpg.pool

from eventstore.connection import retrying, translated
from eventstore.errors import EventStoreError

__all__ = ["CHANNEL", "Listener", "Notifier", "Waker"]

CHANNEL = "eventstore_events"

log = logging.getLogger(__name__)


class Notifier:
    """Sends NOTIFY for appends in the background, at most one round trip per ``min_interval``.

    The first append after a quiet spell is announced at once; under sustained load
    the appends of each ``min_interval`` share one round trip, which keeps the
    notifications' cost (a transaction each, serialised by PostgreSQL) off the
    write path's throughput at the price of at most ``min_interval`` of latency.
    """

    def __init__(self, pool: asyncpg.Pool[Any], *, min_interval: float = 0.005) -> None:
        self._pool = pool
        self._min_interval = min_interval
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_sent = float("-inf")

    def announce(self, category: str, transaction_id: int) -> None:
        """Queue a notification that ``transaction_id`` appended to ``category``."""
        self._pending[category] = max(self._pending.get(category, 0), transaction_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush(), name="eventstore-notifier")

    async def close(self) -> None:
        """Wait for notifications already queued to be sent."""
        if self._task is not None:
            await self._task

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_sent + self._min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            payloads = [f"{category}:{xid}" for category, xid in self._pending.items()]
            self._pending = {}
            self._last_sent = loop.time()
            try:
                await retrying(functools.partial(self._pool.execute, _NOTIFY, CHANNEL, payloads))
            except EventStoreError as e:
                # Not fatal by design: subscribers poll, so they see the events a
                # poll interval later. Nothing else could be done with the error.
                log.warning("event store: could not notify subscribers: %s", e)


_NOTIFY = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"


class Waker:
    """What one subscription waits on: set by notifications for its categories."""

    def __init__(self, categories: Iterable[str] | None) -> None:
        self.categories = None if categories is None else frozenset(categories)
        self.event = asyncio.Event()
        # The newest announced transaction this subscription has not yet seen finish.
        self.pending_transaction_id: int | None = None

    def notify(self, category: str | None, transaction_id: int) -> None:
        """Record an announced append; ``category`` None wakes every subscription."""
        if category is not None and self.categories is not None and category not in self.categories:
            return
        if transaction_id:
            self.pending_transaction_id = max(self.pending_transaction_id or 0, transaction_id)
        self.event.set()


class Listener:
    """One LISTEN connection per store, shared by all its subscriptions.

    The connection comes from the store's pool and is held while at least one
    subscription runs; size the pool with one connection to spare for it.
    """

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._wakers: set[Waker] = set()
        self._connection: asyncpg.pool.PoolConnectionProxy[Any] | None = None
        self._lock = asyncio.Lock()

    @property
    def listening(self) -> bool:
        """Whether notifications are currently being received."""
        # A lost connection is dropped in ``_on_termination``; the pool detaches it.
        return self._connection is not None

    async def register(self, waker: Waker) -> None:
        """Start delivering notifications to ``waker`` (listening first if needed)."""
        self._wakers.add(waker)
        await self.ensure_listening()

    async def unregister(self, waker: Waker) -> None:
        """Stop delivering to ``waker``; the last one out gives the connection back."""
        self._wakers.discard(waker)
        if not self._wakers:
            await self.close()

    async def ensure_listening(self) -> None:
        """(Re)open the LISTEN connection; failures leave subscribers polling."""
        if self.listening or not self._wakers:
            return
        async with self._lock:
            if self.listening or not self._wakers:
                return
            await self._release()
            try:
                async with translated():
                    connection = await self._pool.acquire()
                    try:
                        await connection.add_listener(CHANNEL, self._on_notification)
                    except BaseException:
                        await self._pool.release(connection)
                        raise
            except EventStoreError as e:
                log.warning("event store: LISTEN failed, subscribers fall back to polling: %s", e)
                return
            connection.add_termination_listener(self._on_termination)
            self._connection = connection
        # Notifications sent while nobody listened are lost: make everyone read once.
        for waker in self._wakers:
            waker.notify(None, 0)

    async def close(self) -> None:
        """Stop listening and return the connection to the pool."""
        async with self._lock:
            await self._release()

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.remove_termination_listener(self._on_termination)
            await connection.remove_listener(CHANNEL, self._on_notification)
            await self._pool.release(connection)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.debug("event store: releasing the LISTEN connection: %s", e)

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        category, _, xid = str(payload).rpartition(":")
        transaction_id = int(xid) if xid.isdigit() else 0
        for waker in self._wakers:
            waker.notify(category or None, transaction_id)

    def _on_termination(self, _connection: object) -> None:
        log.warning("event store: LISTEN connection lost; subscribers poll until it is back")
        # The pool has already taken the dead connection back.
        self._connection = None
        for waker in self._wakers:
            waker.notify(None, 0)
