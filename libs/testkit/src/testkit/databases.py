"""Throwaway PostgreSQL databases for tests and benchmarks, so no run sees another's rows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["scratch_database"]


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str = "test") -> AsyncIterator[str]:
    """A new, empty database named `<prefix>_<random>` on the server of `server_url`; yields its URL.

    Dropped on exit WITH (FORCE), so connections a test or a service left open
    do not keep it alive; the drop gets 30 s, then the exit raises rather than hangs.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await asyncio.wait_for(admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)
        finally:
            await admin.close()
