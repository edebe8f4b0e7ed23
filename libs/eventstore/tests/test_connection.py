"""The driver boundary: which asyncpg failures are the store being unavailable, and which are errors."""

from __future__ import annotations

import asyncpg
import pytest
from eventstore.connection import is_transient, translated
from eventstore.errors import EventStoreError, StoreUnavailable


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to user request"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call Connection.fetchrow(): connection is closed"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_connection_failures_become_store_unavailable(error: BaseException) -> None:
    assert is_transient(error)
    with pytest.raises(StoreUnavailable) as raised:
        async with translated():
            raise error
    assert raised.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UndefinedTableError('relation "nope" does not exist'),
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_other_driver_errors_are_store_errors_not_outages(error: BaseException) -> None:
    assert not is_transient(error)
    with pytest.raises(EventStoreError) as raised:
        async with translated():
            raise error
    assert not isinstance(raised.value, StoreUnavailable)
