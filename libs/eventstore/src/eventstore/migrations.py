"""Versioned schema migrations: ``NNN_name.sql`` files applied in order, once each.

The runner is not the event store's alone: any package points it at its own SQL
folder, history schema and lock key (the command service keeps its tables in
schema ``command`` this way), and gets the same guarantees.

Safe to run twice and from several processes at once: every run takes a
session-level advisory lock first, so concurrent runs queue up and later ones find
the work done. Each file runs in its own transaction together with the row that
records it, so a failed migration leaves nothing half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from eventstore.connection import translated
from eventstore.errors import EventStoreError
from eventstore.types import Connection

__all__ = ["EVENTSTORE_LOCK_KEY", "Migration", "MigrationError", "available_migrations", "migrate"]

# An arbitrary constant that identifies "eventstore migrations" among advisory locks.
EVENTSTORE_LOCK_KEY = 0x65766E7473746F72  # "evntstor"
_FILE_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
# The schema's name goes into SQL text (identifiers cannot be bound), so it is held to plain names.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class MigrationError(EventStoreError):
    """A migration that cannot be applied: its SQL failed, or two files share its version number."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of the schema history."""

    version: int
    name: str
    sql: str


def _eventstore_folder() -> Traversable:
    return resources.files("eventstore").joinpath("sql")


def available_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the event store's own), in version order.

    Raises ``MigrationError`` when two files share a version number: which one would
    run first is then anybody's guess.
    """
    found = []
    for entry in (folder or _eventstore_folder()).iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        shared = ", ".join(f"{v:03d}" for v in duplicates)
        raise MigrationError(f"two migration files share version(s) {shared}")
    return found


async def migrate(
    target: str | Connection,
    folder: Traversable | None = None,
    *,
    schema: str = "eventstore",
    lock_key: int = EVENTSTORE_LOCK_KEY,
) -> list[Migration]:
    """Apply the pending migrations of ``folder`` to the database at ``target`` (a DSN or a connection).

    Without arguments this is the event store's own schema. Another package passes
    its SQL folder (``importlib.resources.files(package) / "sql"``), the ``schema``
    that holds its history table (``<schema>.schema_migrations``, created if needed)
    and an advisory ``lock_key`` of its own, so its runs queue behind each other
    but not behind the event store's. Returns the migrations this call applied
    (empty when the schema was up to date); driver errors come out as
    ``EventStoreError``.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema must be a plain lower-case SQL name, got {schema!r}")
    migrations = available_migrations(folder)
    async with translated():
        if isinstance(target, str):
            connection = await asyncpg.connect(target)
            try:
                return await _migrate(connection, migrations, schema, lock_key)
            finally:
                await connection.close()
        return await _migrate(target, migrations, schema, lock_key)


async def _migrate(
    connection: Connection, migrations: list[Migration], schema: str, lock_key: int
) -> list[Migration]:
    await connection.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await connection.execute(
            f"""
            CREATE SCHEMA IF NOT EXISTS {schema};
            CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            """
        )
        rows = await connection.fetch(f"SELECT version FROM {schema}.schema_migrations")
        done = {row["version"] for row in rows}
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
            except asyncpg.PostgresError as e:
                failed = f"{migration.version:03d} {migration.name}"
                raise MigrationError(f"{schema} migration {failed}: {e}") from e
            applied.append(migration)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", lock_key)
