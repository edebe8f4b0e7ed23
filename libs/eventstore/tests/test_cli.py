"""`eventstore`, the command line, run as a process: its help, and one line for each failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

PASSWORD = "pw-that-must-not-show"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventstore.cli", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eventstore: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr


def test_the_help_names_the_variable_it_reads() -> None:
    top, migrate = run("--help"), run("migrate", "--help")

    assert top.returncode == migrate.returncode == 0
    assert "DATABASE_URL" in top.stdout
    assert "DATABASE_URL" in migrate.stdout


def test_listing_the_migrations_needs_no_database() -> None:
    result = run("migrations")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("001 ")


def test_an_unreachable_database_is_one_line_naming_its_host() -> None:
    port = closed_port()

    result = run("migrate", DATABASE_URL=f"postgresql://suite:{PASSWORD}@127.0.0.1:{port}/suite")

    assert_one_line_error(result, "cannot reach PostgreSQL", f"127.0.0.1:{port}")


def test_a_wrong_password_is_one_line_without_it(database_url: str) -> None:
    parts = urlsplit(database_url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"))

    result = run("migrate", DATABASE_URL=wrong)

    assert_one_line_error(result, "cannot use PostgreSQL", f"{parts.hostname}:{parts.port}")


def test_a_malformed_database_url_is_a_usage_error() -> None:
    result = run("migrate", DATABASE_URL="localhost:5432/suite")

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
