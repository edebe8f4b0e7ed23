"""Pytest fixtures that hand tests the suite's real servers.

Each server's URL comes, in this order, from
1. the environment (`DATABASE_URL`, `REDIS_URL`, `KAFKA_BOOTSTRAP_SERVERS`, `SEARCH_URL`,
   and `OPENSEARCH_URL` / `ELASTICSEARCH_URL` for tests that run against both engines),
2. the `.devstack/env` file that `./dev up` writes (so plain `pytest` works after `./dev up`),
3. a testcontainers container, where a Docker engine answers.
Otherwise the test fails and says which command starts the stack: a missing
server never turns into a silent skip.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = ["SEARCH_ENGINES", "START_STACK", "resolve_url"]

START_STACK = "./dev up"
# The engines the read models must work on, and the variable naming each; the
# local stack runs both, SEARCH_URL names the default one.
SEARCH_ENGINES = {"opensearch": "OPENSEARCH_URL", "elasticsearch": "ELASTICSEARCH_URL"}


def _devstack_env() -> dict[str, str]:
    for folder in [Path.cwd(), *Path.cwd().parents]:
        path = folder / ".devstack" / "env"
        if path.is_file():
            pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
            return {key: shlex.split(value)[0] for key, value in pairs if value}
    return {}


def _docker_engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, check=False, timeout=20).returncode == 0


def _reachable(variable: str, value: str) -> bool:
    if variable == "KAFKA_BOOTSTRAP_SERVERS":
        host, _, port = value.split(",")[0].rpartition(":")
    else:
        parts = urlsplit(value)
        host, port = parts.hostname or "", str(parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0))
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def resolve_url(variable: str, containers: Callable[[str], str] | None = None) -> str:
    """The URL of one server for tests, or a test failure naming the command that starts it."""
    value = os.environ.get(variable) or _devstack_env().get(variable)
    if value:
        if not _reachable(variable, value):
            pytest.fail(
                f"{variable}={value} does not answer: start the local stack with `{START_STACK}`",
                pytrace=False,
            )
        return value
    if containers is not None and _docker_engine():
        return containers(variable)
    pytest.fail(
        f"{variable} is not set and no Docker engine answers: start the local stack with `{START_STACK}` "
        "(it exports the URLs to .devstack/env)",
        pytrace=False,
    )


class _Containers:
    """Starts a testcontainers server per kind of server, once per session, where Docker exists."""

    def __init__(self) -> None:
        self._started: list[Any] = []
        self._urls: dict[str, str] = {}

    def __call__(self, variable: str) -> str:
        # SEARCH_URL is the default engine: the Elasticsearch docker-compose runs too.
        kind = "ELASTICSEARCH_URL" if variable == "SEARCH_URL" else variable
        if kind not in self._urls:
            self._urls[kind] = self._start(kind)
        return self._urls[kind]

    def _start(self, variable: str) -> str:
        if variable == "DATABASE_URL":
            from testcontainers.postgres import PostgresContainer

            postgres = PostgresContainer("postgres:17-alpine", driver=None).start()
            self._started.append(postgres)
            return str(postgres.get_connection_url())
        if variable == "REDIS_URL":
            from testcontainers.redis import RedisContainer

            redis = RedisContainer("redis:7-alpine").start()
            self._started.append(redis)
            return f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        if variable == "KAFKA_BOOTSTRAP_SERVERS":
            from testcontainers.kafka import KafkaContainer

            kafka = KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft().start()
            self._started.append(kafka)
            return str(kafka.get_bootstrap_server())
        if variable == "OPENSEARCH_URL":
            from testcontainers.opensearch import OpenSearchContainer

            opensearch = OpenSearchContainer("opensearchproject/opensearch:2.19.3", mem_limit="1g").start()
            self._started.append(opensearch)
            return f"http://{opensearch.get_container_host_ip()}:{opensearch.get_exposed_port(9200)}"
        from testcontainers.elasticsearch import ElasticSearchContainer

        search = ElasticSearchContainer("elasticsearch:9.2.0", mem_limit="1g").start()
        self._started.append(search)
        return f"http://{search.get_container_host_ip()}:{search.get_exposed_port(9200)}"

    def stop(self) -> None:
        for container in reversed(self._started):
            container.stop()


@pytest.fixture(scope="session")
def _containers() -> Iterator[_Containers]:
    containers = _Containers()
    yield containers
    containers.stop()


@pytest.fixture(scope="session")
def database_url(_containers: _Containers) -> str:
    """The suite's PostgreSQL server (a database tests may create others next to)."""
    return resolve_url("DATABASE_URL", _containers)


@pytest.fixture(scope="session")
def redis_url(_containers: _Containers) -> str:
    return resolve_url("REDIS_URL", _containers)


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(_containers: _Containers) -> str:
    return resolve_url("KAFKA_BOOTSTRAP_SERVERS", _containers)


@pytest.fixture(scope="session")
def search_url(_containers: _Containers) -> str:
    """The default search engine (SEARCH_URL): what the services use."""
    return resolve_url("SEARCH_URL", _containers)


@pytest.fixture(scope="session", params=list(SEARCH_ENGINES))
def search_engine_url(request: pytest.FixtureRequest, _containers: _Containers) -> str:
    """Each search engine in turn: a test taking this runs once on OpenSearch and once on Elasticsearch.

    The read models promise to work on both, so neither may be missing: an
    engine that does not answer fails the test with the command that starts it.
    """
    engine: str = request.param
    return resolve_url(SEARCH_ENGINES[engine], _containers)


@pytest.fixture
async def fresh_database_url(database_url: str) -> AsyncIterator[str]:
    """A new, empty database for one test, dropped afterwards: tests never see each other's rows."""
    from testkit.databases import scratch_database  # asyncpg only for the tests that ask for one

    async with scratch_database(database_url) as url:
        yield url
