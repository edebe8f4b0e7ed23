"""`projector`, the command line, run as a process: what each subcommand asks for, and how it fails.

Each run gets only the variables named in the test (plus PATH), so a subcommand
that still read another variable would fail here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
from projector_service import cli
from projector_service.bootstrap import Projector
from projector_service.servers import host_of, masked
from projector_service.settings import ProjectorSettings
from redis.asyncio import Redis

from services.projector.tests.conftest import log_events, write_scenario

PASSWORD = "pw-that-must-not-show"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "projector_service.cli", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def run_async(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, **env)


def closed_port() -> int:
    """A local port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_password(url: str, *, port: int | None = None) -> str:
    """`url` with a password (and another port): what the error must not show."""
    parts = urlsplit(url)
    user = parts.username or "suite"
    host = f"{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("projector: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr
    assert "Traceback" not in result.stderr


# --- position: Redis only ---------------------------------------------------------------------


async def test_position_works_with_only_redis_url_set(redis_url: str) -> None:
    result = await run_async("position", REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    names = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert names == ["redis", "search"]


async def test_position_prints_what_each_projection_reached(redis_url: str) -> None:
    prefix = f"p{uuid.uuid4().hex[:10]}-"
    redis = Redis.from_url(redis_url)
    try:
        await redis.hset(f"{prefix}rm:redis:position", "position", "42")
        result = await run_async("position", REDIS_URL=redis_url, PROJECTOR_KEY_PREFIX=prefix)
    finally:
        await redis.delete(f"{prefix}rm:redis:position")
        await redis.aclose()

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["redis: 42", "search: -1"]


def test_position_imports_no_client_it_does_not_use(redis_url: str) -> None:
    # What made every call slow to start: the search, Kafka and PostgreSQL clients and rich.
    script = (
        "import sys; from projector_service.cli import main; code = main(['position']); "
        "heavy = ('elasticsearch', 'opensearchpy', 'aiokafka', 'asyncpg', 'rich', 'litestar'); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)})); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": os.environ.get("PATH", ""), "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_an_unreachable_redis_is_one_line_naming_it_and_its_host() -> None:
    port = closed_port()

    result = run("position", REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")

    assert_one_line_error(result, "cannot reach Redis", f"127.0.0.1:{port}")


def test_a_server_that_is_not_redis_is_one_line_naming_it(database_url: str) -> None:
    postgres = urlsplit(database_url)

    result = run("position", REDIS_URL=f"redis://:{PASSWORD}@{postgres.hostname}:{postgres.port}/0")

    assert_one_line_error(result, "Redis", f"{postgres.hostname}:{postgres.port}")


def test_a_missing_variable_is_named_with_exit_2() -> None:
    result = run("position")

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "projector: missing environment variable(s): PROJECTOR_REDIS_URL (or REDIS_URL)"
    )


# --- replay and rebuild: the store and Redis, the search engine only for search -----------------


async def test_replaying_a_stream_the_store_does_not_hold_says_so(store_url: str, redis_url: str) -> None:
    stream = f"order-{uuid.uuid4()}"

    result = await run_async(
        "replay", "redis", "--stream", stream,
        DATABASE_URL=store_url, REDIS_URL=redis_url, PROJECTOR_KEY_PREFIX=f"p{uuid.uuid4().hex[:10]}-",
    )  # fmt: skip

    assert_one_line_error(result, stream, "does not exist")
    assert "applied" not in result.stdout


async def test_replaying_a_stream_needs_no_kafka_nor_search_for_redis(
    settings: ProjectorSettings, projector: Projector
) -> None:
    await write_scenario(projector.store, orders=1)
    stream = next(e.stream_id for e in await log_events(projector.store) if e.stream_id.startswith("order-"))

    result = await run_async(
        "replay", "redis", "--stream", stream,
        DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
        PROJECTOR_KEY_PREFIX=settings.projector_key_prefix,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert f"{stream}: " in result.stdout
    assert "events applied again to redis" in result.stdout


def test_replaying_into_search_asks_for_search_url(database_url: str, redis_url: str) -> None:
    result = run("replay", "search", "--stream", "order-x", DATABASE_URL=database_url, REDIS_URL=redis_url)

    assert result.returncode == 2
    assert "SEARCH_URL" in result.stderr
    assert "KAFKA" not in result.stderr


def test_an_unreachable_database_is_one_line_naming_it_and_its_host(redis_url: str) -> None:
    port = closed_port()

    result = run(
        "rebuild", "redis",
        DATABASE_URL=f"postgresql://suite:{PASSWORD}@127.0.0.1:{port}/suite", REDIS_URL=redis_url,
    )  # fmt: skip

    assert_one_line_error(result, "cannot reach PostgreSQL", f"127.0.0.1:{port}")


def test_a_wrong_database_password_is_one_line_without_it(database_url: str, redis_url: str) -> None:
    result = run("rebuild", "redis", DATABASE_URL=with_password(database_url), REDIS_URL=redis_url)

    postgres = urlsplit(database_url)
    assert_one_line_error(result, "cannot use PostgreSQL", f"{postgres.hostname}:{postgres.port}")


async def test_an_unreachable_search_engine_is_one_line_naming_it(store_url: str, redis_url: str) -> None:
    port = closed_port()

    result = await run_async(
        "replay", "search", "--stream", "order-x",
        DATABASE_URL=store_url, REDIS_URL=redis_url, SEARCH_URL=f"http://u:{PASSWORD}@127.0.0.1:{port}",
    )  # fmt: skip

    assert_one_line_error(result, "cannot reach the search engine", f"127.0.0.1:{port}")


async def test_a_position_the_log_does_not_hold_is_one_line(store_url: str, redis_url: str) -> None:
    result = await run_async(
        "replay", "redis", "--from-position", "999999",
        DATABASE_URL=store_url, REDIS_URL=redis_url, PROJECTOR_KEY_PREFIX=f"p{uuid.uuid4().hex[:10]}-",
    )  # fmt: skip

    assert_one_line_error(result, "no event at position 999999")


# --- dead letters: Kafka only for list and show --------------------------------------------------


def test_dead_letters_list_needs_only_kafka(kafka_bootstrap_servers: str) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.projector.dlq"  # never created: nothing was dead-lettered

    result = run(
        "dead-letters", "list",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap_servers, PROJECTOR_DEAD_LETTER_TOPIC=topic,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "projection" in result.stdout  # the table's header


def test_replaying_a_dead_letter_that_does_not_exist_says_so(kafka_bootstrap_servers: str) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.projector.dlq"

    result = run(
        "dead-letters", "replay", "0:99",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap_servers, PROJECTOR_DEAD_LETTER_TOPIC=topic,
        DATABASE_URL="postgresql://suite@db.invalid/suite", REDIS_URL="redis://cache.invalid:6379/0",
        PROJECTOR_PROJECTIONS="redis",
    )  # fmt: skip

    assert_one_line_error(result, "no dead letter 0:99")


def test_an_unreachable_kafka_is_one_line_naming_it_and_its_host() -> None:
    port = closed_port()

    result = run("dead-letters", "list", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}")

    assert_one_line_error(result, "cannot reach Kafka", f"127.0.0.1:{port}")


# --- help ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reads", "not_read"),
    [
        (["position"], ["REDIS_URL"], ["DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SEARCH_URL"]),
        (["rebuild"], ["DATABASE_URL", "REDIS_URL", "SEARCH_URL"], ["KAFKA_BOOTSTRAP_SERVERS"]),
        (["replay"], ["DATABASE_URL", "REDIS_URL", "SEARCH_URL"], ["KAFKA_BOOTSTRAP_SERVERS"]),
        (["dead-letters", "list"], ["KAFKA_BOOTSTRAP_SERVERS"], ["DATABASE_URL", "REDIS_URL"]),
        (["dead-letters", "show"], ["KAFKA_BOOTSTRAP_SERVERS"], ["DATABASE_URL", "REDIS_URL"]),
        (["dead-letters", "replay"], ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"], []),
    ],
)
def test_each_subcommand_help_lists_the_variables_it_reads(
    args: list[str], reads: list[str], not_read: list[str]
) -> None:
    result = run(*args, "--help")

    assert result.returncode == 0, result.stderr
    for name in reads:
        assert name in result.stdout
    for name in not_read:
        assert name not in result.stdout


def test_the_help_says_what_each_subcommand_needs() -> None:
    result = run("--help")

    assert result.returncode == 0, result.stderr
    assert "position                   REDIS_URL" in result.stdout
    assert "dead-letters list, show    KAFKA_BOOTSTRAP_SERVERS" in result.stdout


# --- pure parts --------------------------------------------------------------------------------


def test_the_cli_defaults_are_the_services() -> None:
    service = {f.name: f.default for f in msgspec.structs.fields(ProjectorSettings)}
    for settings in (cli.PositionSettings, cli.DeadLetterSettings, cli.DeadLetterReplaySettings):
        for field in msgspec.structs.fields(settings):
            if field.name.startswith("projector_"):
                assert field.default == service[field.name], field.name


def test_a_url_is_shown_as_its_host_and_its_password_is_masked() -> None:
    url = f"postgresql://suite:{PASSWORD}@db.example:5433/suite"

    assert host_of(url) == "db.example:5433"
    assert host_of("k1:9092,k2:9092") == "k1:9092,k2:9092"
    assert masked(f"failed: {url}", url) == "failed: db.example:5433"
    assert masked(f"password {PASSWORD} refused", url) == "password *** refused"
