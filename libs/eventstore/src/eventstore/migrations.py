"""Versioned schema migrations: ``sql/NNN_name.sql`` files applied in order, once each.

Safe to run twice and from several processes at once: every run takes a
session-level advisory lock first, so concurrent runs queue up and later ones find
the work done. Each file runs in its own transaction together with the row that
records it, so a failed migration leaves nothing half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from eventstore.connection import translated
from eventstore.types import Connection

__all__ = ["Migration", "available_migrations", "migrate"]

# An arbitrary constant that identifies "eventstore migrations" among advisory locks.
_LOCK_KEY = 0x65766E7473746F72  # "evntstor"
_FILE_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of the schema history."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("eventstore").joinpath("sql").iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if len({m.version for m in found}) != len(found):
        raise RuntimeError("two migration files share a version number")
    return found


async def migrate(target: str | Connection) -> list[Migration]:
    """Apply pending migrations to the database at ``target`` (a DSN or a connection).

    Returns the migrations this call applied (empty when the schema was up to date).
    """
    async with translated():
        if isinstance(target, str):
            connection = await asyncpg.connect(target)
            try:
                return await _migrate(connection)
            finally:
                await connection.close()
        return await _migrate(target)


async def _migrate(connection: Connection) -> list[Migration]:
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(
            """
            CREATE SCHEMA IF NOT EXISTS eventstore;
            CREATE TABLE IF NOT EXISTS eventstore.schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            """
        )
        rows = await connection.fetch("SELECT version FROM eventstore.schema_migrations")
        done = {row["version"] for row in rows}
        applied = []
        for migration in available_migrations():
            if migration.version in done:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO eventstore.schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
