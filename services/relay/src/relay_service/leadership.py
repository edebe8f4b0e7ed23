"""One active relay: the holder of a PostgreSQL advisory lock publishes, others wait.

A session-level advisory lock belongs to one connection. When the leader's
process dies, PostgreSQL sees the connection close and releases the lock, and a
standby's next `pg_try_advisory_lock` wins: failover takes about one poll
interval, with no lease to tune and no clock to trust.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

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
) -> AsyncIterator[asyncio.Event]:
    """Wait until this process holds the lock; yield an event that is set if the lock is lost."""
    connection = await asyncpg.connect(dsn, server_settings={"application_name": "relay-leadership"})
    try:
        while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
            on_standby()
            await asyncio.sleep(poll_interval)
        log.info("relay lock %s acquired: publishing", key)
        lost = asyncio.Event()
        watchdog = asyncio.create_task(_watch(connection, lost, check_interval))
        try:
            yield lost
        finally:
            watchdog.cancel()
    finally:
        # Closing the session releases the lock even if unlocking would fail.
        await connection.close(timeout=5)


async def _watch(connection: asyncpg.Connection, lost: asyncio.Event, interval: float) -> None:
    # If the lock's connection breaks, PostgreSQL has released the lock and a
    # standby may already publish: stop rather than publish twice.
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            log.error("relay lock connection lost (%s): stepping down", error)
            lost.set()
            return
