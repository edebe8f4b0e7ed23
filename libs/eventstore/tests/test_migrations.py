"""Schema migrations: applied once, in order, safely from several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
from eventstore.migrations import available_migrations, migrate


async def applied_versions(url: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT version FROM eventstore.schema_migrations ORDER BY version")
    finally:
        await connection.close()
    return [row["version"] for row in rows]


def test_the_package_ships_numbered_migrations_starting_at_one() -> None:
    migrations = available_migrations()

    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE eventstore.events" in migrations[0].sql


async def test_migrate_creates_the_tables_and_records_each_version(fresh_database_url: str) -> None:
    applied = await migrate(fresh_database_url)

    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert await applied_versions(fresh_database_url) == [m.version for m in applied]
    connection = await asyncpg.connect(fresh_database_url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'eventstore' ORDER BY 1"
        )
    finally:
        await connection.close()
    assert [t["table_name"] for t in tables] == [
        "checkpoints",
        "events",
        "schema_migrations",
        "snapshots",
        "streams",
    ]


async def test_migrating_twice_applies_nothing_the_second_time(fresh_database_url: str) -> None:
    await migrate(fresh_database_url)

    assert await migrate(fresh_database_url) == []


async def test_concurrent_migrations_apply_each_file_exactly_once(fresh_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_database_url) for _ in range(6)))

    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in available_migrations()]
    assert await applied_versions(fresh_database_url) == sorted(applied)


async def test_migrate_accepts_an_open_connection(fresh_database_url: str) -> None:
    connection = await asyncpg.connect(fresh_database_url)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()

    assert applied


async def test_the_command_line_migrates_the_database_at_database_url(fresh_database_url: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventstore.cli", "migrate"],
            env={**os.environ, "DATABASE_URL": fresh_database_url},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    first, second = await asyncio.to_thread(run), await asyncio.to_thread(run)

    assert first.returncode == 0, first.stderr
    assert "applied 001 initial" in first.stdout
    assert second.returncode == 0
    assert "up to date" in second.stdout


async def test_the_command_line_says_when_database_url_is_missing() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "eventstore.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
