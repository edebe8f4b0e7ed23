"""`scratch_database`: a database of one's own that is gone afterwards, whatever happened inside."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest
from testkit.databases import scratch_database


async def database_exists(server_url: str, name: str) -> bool:
    connection = await asyncpg.connect(server_url)
    try:
        return bool(await connection.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def test_the_database_is_empty_inside_and_dropped_on_exit(database_url: str) -> None:
    async with scratch_database(database_url, "kit") as url:
        name = urlsplit(url).path[1:]
        assert name.startswith("kit_")
        connection = await asyncpg.connect(url)  # left open: the drop must not wait for it
        tables = await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
        assert await database_exists(database_url, name)
    assert not await database_exists(database_url, name)
    await connection.close()


async def test_the_database_is_dropped_when_the_body_fails(database_url: str) -> None:
    with pytest.raises(RuntimeError, match="inside"):
        async with scratch_database(database_url) as url:
            raise RuntimeError("inside")
    assert not await database_exists(database_url, urlsplit(url).path[1:])
