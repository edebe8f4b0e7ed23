"""One active worker: the holder of a PostgreSQL advisory lock does the work, others stand by.

A session-level advisory lock belongs to one connection. When the leader's
process dies, PostgreSQL sees the connection close and releases the lock, and a
standby's next ``pg_try_advisory_lock`` wins: failover takes about one poll
interval, with no lease to tune and no clock to trust. The relay uses it so
that one process publishes the log; any singleton worker can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from eventstore.connection import translated
from eventstore.errors import EventStoreError

__all__ = ["leadership"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def leadership(
    dsn: str,
    key: int,
    *,
    poll_interval: float,
    on_standby: Callable[[], None] = lambda: None,
    check_interval: float = 1.0,
    application_name: str = "eventstore-leadership",
) -> AsyncIterator[asyncio.Event]:
    """Wait until this process holds the advisory lock ``key``; yield an event that is set if it is lost.

    The lock lives on a connection of its own (``application_name`` shows it in
    ``pg_stat_activity``), checked every ``check_interval`` seconds: when that
    connection breaks, PostgreSQL has released the lock and a standby may already
    lead, so the caller must stop once the event is set. ``on_standby`` is called
    each time the lock is found taken. Failing to reach the database raises
    ``StoreUnavailable``.
    """
    async with translated():
        connection = await asyncpg.connect(dsn, server_settings={"application_name": application_name})
    try:
        async with translated():
            while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
                on_standby()
                await asyncio.sleep(poll_interval)
        log.info("advisory lock %s acquired: leading", key)
        lost = asyncio.Event()
        watchdog = asyncio.create_task(_watch(connection, key, lost, check_interval))
        try:
            yield lost
        finally:
            watchdog.cancel()
    finally:
        # Closing the session releases the lock even if unlocking would fail.
        await connection.close(timeout=5)


async def _watch(connection: asyncpg.Connection, key: int, lost: asyncio.Event, interval: float) -> None:
    # If the lock's connection breaks, PostgreSQL has released the lock and a
    # standby may already lead: stop rather than do the work twice.
    while True:
        await asyncio.sleep(interval)
        try:
            async with translated():
                await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=5)
        except EventStoreError as error:
            log.error("advisory lock %s: its connection is lost (%s): stepping down", key, error)
            lost.set()
            return
