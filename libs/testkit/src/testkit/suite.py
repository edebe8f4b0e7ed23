"""The six services as processes on free ports, wired to each other and to the given servers.

    async with running_suite(tmp_path, servers, jwt) as suite:
        suite["command"].url, suite["saga"].url, ...

Topics, consumer groups, Redis keys and index names carry a tag of their own
(`Suite.topics`, `Suite.keys`), so runs on the shared servers do not meet; the
caller migrates the database first and removes the keys and indices after.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from testkit.harness import ServiceProcess, running_service

__all__ = ["PROVIDER_SECRET", "Suite", "running_suite"]

PROVIDER_SECRET = "suite-sandbox-webhook-secret-0123456789"  # noqa: S105 (a test value)
STARTUP = 180.0  # seconds for a service to be ready: six start at once on a busy machine


@dataclass
class Suite:
    """The running processes by job name (command, query, relay, projector, saga, sandbox)."""

    topics: str
    keys: str
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __getitem__(self, job: str) -> ServiceProcess:
        return self.processes[job]


@contextlib.asynccontextmanager
async def running_suite(
    folder: Path,
    servers: Mapping[str, str],
    jwt: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Suite]:
    """All six services, ready; stopped with SIGTERM on the way out.

    `servers` holds DATABASE_URL, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS and SEARCH_URL (a
    migrated database), `jwt` the JWT_SECRET, JWT_ISSUER and JWT_AUDIENCE the command
    service checks, `env` anything every process gets on top. Logs go to `folder/<job>.log`.
    """
    tag = uuid.uuid4().hex[:8]
    suite = Suite(topics=f"suite{tag}.", keys=f"suite{tag}-")
    topics = suite.topics
    common = {**servers, **jwt, "LOG_LEVEL": "WARNING", **(env or {})}
    async with contextlib.AsyncExitStack() as stack:

        async def start(job: str, module: str, port_variable: str, **own: str) -> ServiceProcess:
            process = await stack.enter_async_context(
                running_service(
                    module,
                    {**common, **own},
                    log=folder / f"{job}.log",
                    port_variable=port_variable,
                    ready=False,
                )
            )
            suite.processes[job] = process
            return process

        command = await start("command", "command_service", "COMMAND_PORT")
        await start(
            "relay", "relay_service", "RELAY_PORT",
            RELAY_TOPIC_PREFIX=topics, RELAY_LOCK_KEY=str(random.randrange(1, 2**62)),
        )  # fmt: skip
        await start(
            "projector", "projector_service", "PROJECTOR_PORT",
            PROJECTOR_TOPIC_PREFIX=topics, PROJECTOR_GROUP_PREFIX=f"{topics}projector.",
            PROJECTOR_DEAD_LETTER_TOPIC=f"{topics}projector.dlq", PROJECTOR_KEY_PREFIX=suite.keys,
        )  # fmt: skip
        query = await start("query", "query_service", "QUERY_PORT", QUERY_KEY_PREFIX=suite.keys)
        sandbox = await start(
            "sandbox", "saga_service.sandbox", "SANDBOX_PORT",
            SANDBOX_SECRET=PROVIDER_SECRET, SANDBOX_LATENCY_MS="10", SANDBOX_JITTER_MS="0",
        )  # fmt: skip
        await start(
            "saga", "saga_service", "SAGA_PORT",
            SAGA_COMMAND_URL=command.url, SAGA_PROVIDER_URL=sandbox.url, SAGA_PROVIDER_SECRET=PROVIDER_SECRET,
            SAGA_TOPIC_PREFIX=topics, SAGA_GROUP_ID=f"saga-{topics}",
            SAGA_DEAD_LETTER_TOPIC=f"{topics}saga.dead-letters",
        )  # fmt: skip
        # The query service is live, not ready, until the projector made its index.
        await asyncio.gather(*(p.ready(STARTUP) for p in suite.processes.values() if p is not query))
        await query.wait_for(lambda status, _: status == 200, path="/health/live", timeout=STARTUP)
        yield suite
