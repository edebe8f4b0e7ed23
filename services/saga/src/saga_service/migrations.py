"""The saga's own tables (schema `saga`), created at start-up from `sql/NNN_name.sql`.

The same shape as the command service's migrations: each file is applied once, in
its own transaction with the row recording it, under an advisory lock of the
saga's own so that instances starting together queue up instead of racing. When
the event store's runner takes any package's SQL folder, this becomes one call to it.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

__all__ = ["migrate"]

# Arbitrary, distinct from the event store's and the command service's: "saga migrations".
_LOCK_KEY = 0x736167616D6967  # "sagamig"
_FILE_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")


async def migrate(dsn: str) -> list[str]:
    """Apply the pending migrations; returns the names of those this call applied."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            return await _apply(connection)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await connection.close()


async def _apply(connection: asyncpg.Connection) -> list[str]:
    await connection.execute(
        """
        CREATE SCHEMA IF NOT EXISTS saga;
        CREATE TABLE IF NOT EXISTS saga.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    done = {row["version"] for row in await connection.fetch("SELECT version FROM saga.schema_migrations")}
    files = sorted(
        (int(match[1]), match[2], entry)
        for entry in resources.files("saga_service").joinpath("sql").iterdir()
        if (match := _FILE_NAME.fullmatch(entry.name))
    )
    applied = []
    for version, name, entry in files:
        if version in done:
            continue
        async with connection.transaction():
            await connection.execute(entry.read_text(encoding="utf-8"))
            await connection.execute(
                "INSERT INTO saga.schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
        applied.append(name)
    return applied
