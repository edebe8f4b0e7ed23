"""`eventstore`: bring the database at DATABASE_URL to the current schema.

`eventstore --help` lists its commands, the variable it reads and its exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from urllib.parse import urlsplit

import asyncpg

from eventstore.connection import translated
from eventstore.errors import EventStoreError, StoreUnavailable
from eventstore.migrations import Migration, available_migrations, migrate

__all__ = ["main"]

_POSTGRES_URL = re.compile(r"^postgres(ql)?://\S+$")
# The epilog of `--help`: kept out of the module docstring, which says only what this is.
_HELP = """\
    eventstore migrate        apply pending schema migrations (safe to run concurrently)
    eventstore migrations     list the migrations this version ships (reads no variable)

Environment variables it reads:
  DATABASE_URL    postgresql://user:password@host:port/database (`migrate` only;
                  `--database-url` overrides it)

Exit status: 0 done; 1 failed, said in one line on stderr (an unreachable server is
named with its host, never its password); 2 a wrong argument or a missing or
malformed DATABASE_URL.
"""
CONNECT_TIMEOUT = 10.0  # seconds; asyncpg's default (60) is long to wait for a wrong port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventstore",
        description=(__doc__ or "").partition("\n\n")[0],
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "migrate",
        help="apply pending schema migrations (safe to run concurrently)",
        epilog="environment variables it reads:\n  DATABASE_URL (required unless --database-url is given)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--database-url", default=None, help="default: $DATABASE_URL")
    commands.add_parser(
        "migrations",
        help="list the migrations this version ships",
        epilog="reads no environment variable and no database",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "migrations":
        for migration in available_migrations():
            print(f"{migration.version:03d} {migration.name}")
        return 0
    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("eventstore: DATABASE_URL is not set (or pass --database-url)", file=sys.stderr)
        return 2
    if not _POSTGRES_URL.match(url):
        expected = "postgresql://user:password@host:port/database"
        print(f"eventstore: DATABASE_URL: expected {expected}", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(_migrate(url))
    except _Unusable as error:
        print(f"eventstore: {_one_line(_masked(str(error), url))}", file=sys.stderr)
        return 1
    except EventStoreError as error:
        print(f"eventstore: migration failed: {_one_line(_masked(str(error), url))}", file=sys.stderr)
        return 1
    if applied:
        for migration in applied:
            print(f"applied {migration.version:03d} {migration.name}")
    else:
        print("schema is up to date")
    return 0


class _Unusable(Exception):
    """The database could not be connected to; the message names its host."""


async def _migrate(url: str) -> list[Migration]:
    try:
        async with translated():
            connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except EventStoreError as error:
        # StoreUnavailable: nothing answered; otherwise the server refused (password, database).
        verb = "reach" if isinstance(error, StoreUnavailable) else "use"
        cause = error.__cause__
        # The driver's own words; some (a connection reset) have none but their class.
        reason = (str(cause) or type(cause).__name__) if cause is not None else str(error)
        if isinstance(cause, TimeoutError):
            reason = f"no answer within {CONNECT_TIMEOUT:g} s"
        raise _Unusable(f"cannot {verb} PostgreSQL at {_host(url)}: {reason}") from error
    try:
        return await migrate(connection)
    finally:
        await connection.close()


def _host(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: asyncpg has already said so
        port = None
    host = parts.hostname or "localhost"
    return f"{host}:{port}" if port else host


def _masked(text: str, url: str) -> str:
    # Driver messages may repeat the URL or its password; neither belongs on a terminal or in a log.
    text = text.replace(url, _host(url))
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
