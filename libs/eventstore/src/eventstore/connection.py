"""The boundary with asyncpg: the pool, error translation and the one place that retries.

Only connection-level failures are retried (the server restarted, the connection
dropped, too many clients): they say nothing about the request, and every operation
the store retries is safe to repeat. Appends in particular are idempotent through
their event ids, so an append whose commit was lost in transit succeeds on retry
without writing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import asyncpg
import asyncpg.exceptions

from eventstore.errors import EventStoreError, StoreUnavailable

__all__ = [
    "TRANSIENT",
    "TRANSIENT_ERRORS",
    "PoolSettings",
    "close_pool",
    "connect",
    "is_transient",
    "pool_for",
    "retrying",
    "translated",
]

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    # Class 57 (operator intervention): the server shutting down or restarting (admin and crash
    # shutdown, "cannot connect now"), or a statement cancelled by an operator or a timeout.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # What asyncpg raises when the server's "terminating connection" arrives while
    # a statement is being prepared (seen in tests that kill backends).
    asyncpg.exceptions.InternalClientError,
)

# What a caller of the store (or of its pool) may retry later: the store's own `StoreUnavailable`
# and the driver errors it is translated from. The one definition every service uses.
TRANSIENT: tuple[type[BaseException], ...] = (StoreUnavailable, *TRANSIENT_ERRORS)


async def connect(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float | None = 60.0,
    application_name: str = "eventstore",
    full_reset: bool = False,
) -> asyncpg.Pool[asyncpg.Record]:
    """Open a connection pool set up for the event store.

    asyncpg's built-in codecs already map what the store uses (``xid8`` to int, ``jsonb``
    to str, ``uuid``); the server settings switch off JIT, which costs more than it
    saves on the store's short indexed queries. Connections go back to the pool
    without asyncpg's session reset unless ``full_reset``: code that borrows them
    must not leave SET, LISTEN or advisory locks behind. See ``docs/event-store.md``
    for sizing.
    """
    async with translated():
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            server_settings={"application_name": application_name, "jit": "off"},
            reset=None if full_reset else _keep_session,
        )
    return pool


async def close_pool(pool: asyncpg.Pool[asyncpg.Record], timeout: float) -> None:
    """Close `pool`, waiting at most `timeout` seconds for borrowed connections to come back."""
    await asyncio.wait_for(pool.close(), timeout=timeout)


class PoolSettings(Protocol):
    """What a service's settings say about its pool (the command service's and the saga's do)."""

    @property
    def database_url(self) -> str: ...
    @property
    def pool_min_size(self) -> int: ...
    @property
    def pool_max_size(self) -> int: ...
    @property
    def shutdown_timeout_seconds(self) -> float: ...


def pool_for(
    settings: PoolSettings, application_name: str
) -> tuple[
    Callable[[], Awaitable[asyncpg.Pool[asyncpg.Record]]],
    Callable[[asyncpg.Pool[asyncpg.Record]], Awaitable[None]],
]:
    """How to open a service's pool as its settings size it, and how to close it within its shutdown time."""

    async def opened() -> asyncpg.Pool[asyncpg.Record]:
        return await connect(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            application_name=application_name,
        )

    async def close(pool: asyncpg.Pool[asyncpg.Record]) -> None:
        await close_pool(pool, settings.shutdown_timeout_seconds)

    return opened, close


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Release a connection without asyncpg's reset query.

    asyncpg's default runs ``RESET ALL; UNLISTEN *; ...`` on every release: one more
    round trip per pooled call, measured at a third of an append's cost. asyncpg
    still rolls back a transaction left open; session state (SET, advisory locks,
    LISTEN) is the borrower's to undo.
    """


# asyncpg reports a connection closed under a call as a bare InterfaceError, told apart only by its text.
_CLOSED_CONNECTION = ("connection is closed", "connection was closed")
_MAYBE_TRANSIENT: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.InterfaceError)


def is_transient(error: BaseException) -> bool:
    """A failure of the connection to PostgreSQL, not of the request: retrying it later is safe."""
    if isinstance(error, TRANSIENT):
        return True
    return isinstance(error, asyncpg.InterfaceError) and any(
        text in str(error) for text in _CLOSED_CONNECTION
    )


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Turn driver exceptions raised inside the block into the store's own errors: connection-level
    failures (`is_transient`) into `StoreUnavailable`, every other one into `EventStoreError`."""
    try:
        yield
    except EventStoreError:
        raise
    except _MAYBE_TRANSIENT as e:
        if not is_transient(e):
            raise EventStoreError(f"database error: {e}") from e
        raise StoreUnavailable(f"database unavailable: {e}") from e
    except (asyncpg.PostgresError, asyncpg.exceptions.InternalClientError) as e:
        raise EventStoreError(f"database error: {e}") from e


async def retrying[T](
    operation: Callable[[], Awaitable[T]], *, attempts: int = 3, base_delay: float = 0.05
) -> T:
    """Run ``operation``, retrying connection failures with jittered exponential backoff.

    After the last attempt the failure surfaces as ``StoreUnavailable``; every other
    driver error is translated without retrying.
    """
    async with translated():
        for attempt in range(1, attempts + 1):
            try:
                return await operation()
            except TRANSIENT_ERRORS as e:
                if attempt == attempts:
                    raise
                delay = base_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.warning("event store: %s; retry %d/%d in %.3fs", e, attempt, attempts - 1, delay)
                await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
