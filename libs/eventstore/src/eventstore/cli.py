"""``eventstore migrate``: bring the database at DATABASE_URL to the current schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from eventstore.errors import EventStoreError
from eventstore.migrations import available_migrations, migrate

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="eventstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("migrate", help="apply pending schema migrations (safe to run concurrently)")
    run.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    commands.add_parser("migrations", help="list the migrations this version ships")
    args = parser.parse_args(argv)

    if args.command == "migrations":
        for migration in available_migrations():
            print(f"{migration.version:03d} {migration.name}")
        return 0
    if not args.database_url:
        print("eventstore: DATABASE_URL is not set (or pass --database-url)", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(migrate(args.database_url))
    except EventStoreError as e:
        print(f"eventstore: migration failed: {e}", file=sys.stderr)
        return 1
    if applied:
        for migration in applied:
            print(f"applied {migration.version:03d} {migration.name}")
    else:
        print("schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
