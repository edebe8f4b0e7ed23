"""Schema migrations: applied once, in order, safely from several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from eventstore.migrations import MigrationError, available_migrations, migrate


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
        "claims",
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


# --- the runner pointed at another package's folder --------------------------------------------

OTHER_LOCK_KEY = 0x6F74686572  # "other"


def write_folder(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


@pytest.fixture
def other_folder(tmp_path: Path) -> Path:
    return write_folder(
        tmp_path / "sql",
        {
            "001_notes.sql": "CREATE TABLE other.notes (id integer PRIMARY KEY, text text NOT NULL);",
            "002_tags.sql": "ALTER TABLE other.notes ADD COLUMN tags text[] NOT NULL DEFAULT '{}';",
            "README.md": "not a migration: ignored",
        },
    )


async def fetch_all(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


async def test_another_folder_is_applied_into_its_own_schema_and_history(
    fresh_database_url: str, other_folder: Path
) -> None:
    applied = await migrate(fresh_database_url, other_folder, schema="other", lock_key=OTHER_LOCK_KEY)

    assert [(m.version, m.name) for m in applied] == [(1, "notes"), (2, "tags")]
    history = await fetch_all(fresh_database_url, "SELECT version FROM other.schema_migrations ORDER BY 1")
    assert [row["version"] for row in history] == [1, 2]
    columns = await fetch_all(
        fresh_database_url,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'notes' ORDER BY ordinal_position",
    )
    assert [c["column_name"] for c in columns] == ["id", "text", "tags"]
    # The event store's own history is another table, untouched.
    schemas = await fetch_all(fresh_database_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'eventstore'")
    assert schemas == []


async def test_another_folder_is_applied_once_and_a_new_file_later(
    fresh_database_url: str, other_folder: Path
) -> None:
    await migrate(fresh_database_url, other_folder, schema="other", lock_key=OTHER_LOCK_KEY)
    again = await migrate(fresh_database_url, other_folder, schema="other", lock_key=OTHER_LOCK_KEY)
    write_folder(other_folder, {"003_index.sql": "CREATE INDEX notes_text ON other.notes (text);"})
    later = await migrate(fresh_database_url, other_folder, schema="other", lock_key=OTHER_LOCK_KEY)

    assert again == []
    assert [m.version for m in later] == [3]


async def test_two_files_with_one_version_are_refused_before_anything_runs(
    fresh_database_url: str, tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "clash",
        {
            "001_first.sql": "CREATE TABLE other.first (id integer);",
            "001_second.sql": "CREATE TABLE other.second (id integer);",
        },
    )

    with pytest.raises(MigrationError, match="001"):
        await migrate(fresh_database_url, folder, schema="other", lock_key=OTHER_LOCK_KEY)

    assert await fetch_all(fresh_database_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'other'") == []


async def test_concurrent_runners_on_another_folder_serialise_and_apply_each_file_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    # Not idempotent on purpose: a second application would fail on the existing table.
    folder = write_folder(
        tmp_path / "sql",
        {
            "001_counter.sql": "CREATE TABLE other.runs (n integer); INSERT INTO other.runs VALUES (1);",
            "002_slow.sql": "SELECT pg_sleep(0.2); INSERT INTO other.runs VALUES (2);",
        },
    )

    results = await asyncio.gather(
        *(migrate(fresh_database_url, folder, schema="other", lock_key=OTHER_LOCK_KEY) for _ in range(4))
    )

    assert sorted(m.version for result in results for m in result) == [1, 2]
    rows = await fetch_all(fresh_database_url, "SELECT n FROM other.runs ORDER BY n")
    assert [row["n"] for row in rows] == [1, 2]


async def test_a_failing_file_names_itself_and_leaves_nothing_half_applied(
    fresh_database_url: str, tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "sql",
        {
            "001_good.sql": "CREATE TABLE other.good (id integer);",
            "002_bad.sql": "CREATE TABLE other.half (id integer); SELECT * FROM other.missing;",
        },
    )

    with pytest.raises(MigrationError, match="002 bad"):
        await migrate(fresh_database_url, folder, schema="other", lock_key=OTHER_LOCK_KEY)

    history = await fetch_all(fresh_database_url, "SELECT version FROM other.schema_migrations")
    assert [row["version"] for row in history] == [1]
    half = await fetch_all(fresh_database_url, "SELECT 1 FROM pg_tables WHERE tablename = 'half'")
    assert half == []


async def test_a_schema_name_that_is_not_a_plain_name_is_refused(
    fresh_database_url: str, other_folder: Path
) -> None:
    with pytest.raises(ValueError, match="schema"):
        await migrate(fresh_database_url, other_folder, schema='x"; DROP SCHEMA public; --', lock_key=1)
