"""The saga's own tables (schema `saga`), from its `sql/` folder, by the event store's migration runner.

Under a lock of the saga's own, so its runs queue apart from the event store's
and other services'.
"""

from __future__ import annotations

from importlib import resources

from eventstore.migrations import Migration
from eventstore.migrations import migrate as run_migrations

__all__ = ["MIGRATION_LOCK_KEY", "migrate_saga_schema"]

# An arbitrary constant ("sagamig" in ASCII).
MIGRATION_LOCK_KEY = 0x736167616D6967


async def migrate_saga_schema(dsn: str) -> list[Migration]:
    """Apply the saga's pending migrations; returns those this call applied."""
    folder = resources.files("saga_service") / "sql"
    return await run_migrations(dsn, folder, schema="saga", lock_key=MIGRATION_LOCK_KEY)
