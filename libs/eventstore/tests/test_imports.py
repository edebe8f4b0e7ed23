"""`eventstore`'s core imports without asyncpg; its PostgreSQL parts load the driver when first used."""

from __future__ import annotations

import subprocess
import sys

import eventstore
import pytest


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_the_core_imports_without_asyncpg() -> None:
    result = run(
        "import sys, eventstore\n"
        "from eventstore import Decider, EventRegistry, MemoryEventStore, Claim, ConcurrencyError, execute\n"
        "assert 'asyncpg' not in sys.modules, 'asyncpg was imported'"
    )

    assert result.returncode == 0, result.stderr


def test_the_postgres_parts_are_imported_from_the_package_as_before() -> None:
    result = run(
        "import sys\n"
        "from eventstore import PostgresEventStore, connect, migrate, read_claim, TRANSIENT\n"
        "from eventstore.postgres import PostgresEventStore as direct\n"
        "assert PostgresEventStore is direct and 'asyncpg' in sys.modules"
    )

    assert result.returncode == 0, result.stderr


def test_every_exported_name_resolves() -> None:
    missing = [name for name in eventstore.__all__ if not hasattr(eventstore, name)]

    assert missing == []


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = eventstore.no_such_thing  # type: ignore[attr-defined]
