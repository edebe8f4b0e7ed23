"""The six services as real processes on one fresh store, with topics, groups, key prefixes and
databases of their own, started once for the module: the load tool is then run against them
as a person would run it, as a separate process with the services' URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from eventstore import migrate
from testkit.harness import ServiceProcess, TokenFactory, running_service, token_factory

SECRET = "load-test-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.load-test", "fulfilment-load-test"
PROVIDER_SECRET = "sandbox-webhook-secret-0123456789"
JWT = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
SANDBOX = {"SANDBOX_SECRET": PROVIDER_SECRET, "SANDBOX_LATENCY_MS": "20", "SANDBOX_JITTER_MS": "20"}


@dataclass(frozen=True)
class Suite:
    command: str
    query: str
    saga: str
    tokens: TokenFactory
    logs: Path

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.logs.glob("*.log")))


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run_tool(*args: str, timeout: float = 120) -> Ran:
    """`fulfilment-load ARGS` as its own process, stdout and stderr captured (so not a terminal)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fulfilment_load",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


def urls(suite: Suite, *, saga: bool = False) -> Sequence[str]:
    found = ["--command-url", suite.command, "--query-url", suite.query]
    return [*found, "--saga-url", suite.saga] if saga else found


def minting(secret: str = SECRET) -> Sequence[str]:
    return ["--jwt-secret", secret, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE]


async def _database(server_url: str, statement: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await asyncio.wait_for(admin.execute(statement.format(name=name)), 30)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def databases(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """Two fresh databases: the event store's, and the saga's streams and timers."""
    names = [f"test_{uuid.uuid4().hex[:16]}" for _ in range(2)]
    for name in names:
        await _database(database_url, 'CREATE DATABASE "{name}"', name)
    store, saga = (urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")) for name in names)
    await migrate(store)
    yield store, saga
    for name in names:
        await _database(database_url, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', name)


@dataclass(frozen=True)
class _Deployment:
    """Where the services of one suite keep their data, and each service's environment for it."""

    store_url: str
    saga_url: str
    redis_url: str
    kafka: str
    search_url: str
    tag: str

    @property
    def prefix(self) -> str:
        return f"load{self.tag}."

    def command(self) -> dict[str, str]:
        limits = {"COMMAND_RATE_LIMIT_PER_SECOND": "10000", "COMMAND_RATE_LIMIT_BURST": "10000"}
        return {**JWT, **limits, "DATABASE_URL": self.store_url, "REDIS_URL": self.redis_url}

    def relay(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.store_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "RELAY_TOPIC_PREFIX": self.prefix,
            "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
            "RELAY_PARTITIONS": "3",
        }

    def projector(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.store_url,
            "REDIS_URL": self.redis_url,
            "SEARCH_URL": self.search_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "PROJECTOR_TOPIC_PREFIX": self.prefix,
            "PROJECTOR_GROUP_PREFIX": f"{self.prefix}projector.",
            "PROJECTOR_DEAD_LETTER_TOPIC": f"{self.prefix}dlq",
            "PROJECTOR_KEY_PREFIX": f"load{self.tag}-",
            "PROJECTOR_PARTITIONS": "3",
        }

    def query(self) -> dict[str, str]:
        return {
            **JWT,
            "REDIS_URL": self.redis_url,
            "SEARCH_URL": self.search_url,
            "QUERY_KEY_PREFIX": f"load{self.tag}-",
        }

    def saga(self, command_url: str, provider_url: str) -> dict[str, str]:
        return {
            **JWT,
            "SAGA_DATABASE_URL": self.saga_url,
            "REDIS_URL": self.redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "SAGA_COMMAND_URL": command_url,
            "SAGA_PROVIDER_URL": provider_url,
            "SAGA_PROVIDER_SECRET": PROVIDER_SECRET,
            "SAGA_TOPIC_PREFIX": self.prefix,
            "SAGA_GROUP_ID": f"saga-{self.prefix}",
            "SAGA_DEAD_LETTER_TOPIC": f"{self.prefix}saga.dead-letters",
            "SAGA_RATE_LIMIT_PER_SECOND": "10000",
            "SAGA_RATE_LIMIT_BURST": "10000",
        }


async def _create_topics(kafka: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{prefix}{name}", 3, 1) for name in ("order", "stock", "payment")]
        )
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def suite(
    databases: tuple[str, str],
    redis_url: str,
    kafka_bootstrap_servers: str,
    search_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    store_url, saga_url = databases
    logs = tmp_path_factory.mktemp("load-suite")
    deployment = _Deployment(
        store_url, saga_url, redis_url, kafka_bootstrap_servers, search_url, tag=uuid.uuid4().hex[:8]
    )
    await _create_topics(kafka_bootstrap_servers, deployment.prefix)

    async with contextlib.AsyncExitStack() as stack:

        async def service(module: str, env: dict[str, str], name: str) -> ServiceProcess:
            return await stack.enter_async_context(
                running_service(
                    module, env, log=logs / f"{name}.log", port_variable=f"{name.upper()}_PORT", ready=False
                )
            )

        command = await service("command_service", deployment.command(), "command")
        relay = await service("relay_service", deployment.relay(), "relay")
        projector = await service("projector_service", deployment.projector(), "projector")
        query = await service("query_service", deployment.query(), "query")
        sandbox = await service("saga_service.sandbox", SANDBOX, "sandbox")
        saga = await service("saga_service", deployment.saga(command.url, sandbox.url), "saga")
        # Started together and awaited together: each start-up costs seconds, a minute and more on a
        # machine busy with other test runs.
        await asyncio.gather(
            *(s.ready(timeout=240) for s in (command, relay, projector, query, sandbox, saga))
        )
        tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
        yield Suite(command=command.url, query=query.url, saga=saga.url, tokens=tokens, logs=logs)
