"""The suite around the saga, as real processes: command service, relay, payment sandbox, saga.

Each test gets its own event store database, its own saga database (the saga's
streams and timers may live apart from the domain's store: `SAGA_DATABASE_URL`),
its own topics and consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from eventstore import PostgresEventStore, RecordedEvent, connect, migrate
from fulfilment.registry import build_registry
from servicekit.testing import ServiceProcess, TokenFactory, running_service, token_factory

SECRET = "saga-test-secret-that-is-long-enough!"
ISSUER, AUDIENCE = "https://issuer.saga-test", "fulfilment-saga-test"
PROVIDER_SECRET = "sandbox-webhook-secret-0123456789"


async def create_database(server_url: str) -> str:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(server_url)
    try:
        await asyncio.wait_for(admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)
    finally:
        await admin.close()


@pytest.fixture
async def saga_database_url(database_url: str) -> AsyncIterator[str]:
    """A second fresh database: the saga's streams and timers."""
    url = await create_database(database_url)
    yield url
    await drop_database(database_url, url)


@pytest.fixture
def tokens() -> TokenFactory:
    return token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


async def create_topics(bootstrap_servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{prefix}{name}", 3, 1) for name in ("order", "stock", "payment")]
        )
    finally:
        await admin.close()


class Suite:
    """The running processes and what tests do with them."""

    def __init__(
        self,
        *,
        command: ServiceProcess,
        sandbox: ServiceProcess,
        saga: ServiceProcess,
        store: PostgresEventStore,
        tokens: TokenFactory,
        prefix: str,
        saga_env: dict[str, str],
    ) -> None:
        self.command = command
        self.sandbox = sandbox
        self.saga = saga
        self.store = store
        self.tokens = tokens
        self.prefix = prefix
        self.saga_env = saga_env
        self.staff = tokens("staff-1", ["staff"])

    async def post(self, url: str, path: str, token: str, body: Any = None, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            return await client.post(
                path,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4()), **headers},
            )

    async def stock(self, sku: str, quantity: int) -> None:
        """Register a product and receive `quantity` units of it."""
        response = await self.post(self.command.url, "/products", self.staff, {"sku": sku, "name": sku})
        assert response.status_code == 201, response.text
        await self.receive(sku, quantity)

    async def receive(self, sku: str, quantity: int) -> None:
        response = await self.post(
            self.command.url, f"/products/{sku}/receipts", self.staff, {"quantity": quantity}
        )
        assert response.status_code == 200, response.text

    async def place(self, customer: str, *lines: tuple[str, int], price: int = 500) -> uuid.UUID:
        """Place an order as `customer`; returns its id."""
        body = {
            "lines": [{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity in lines],
            "currency": "EUR",
        }
        response = await self.post(self.command.url, "/orders", self.tokens(customer, ["customer"]), body)
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["order_id"])

    async def cancel(self, customer: str, order_id: uuid.UUID) -> httpx.Response:
        return await self.post(
            self.command.url,
            f"/orders/{order_id}/cancel",
            self.tokens(customer, ["customer"]),
            {"reason": "no"},
        )

    async def view(self, order_id: uuid.UUID, saga: ServiceProcess | None = None) -> httpx.Response:
        return await (saga or self.saga).get(
            f"/sagas/{order_id}", headers={"Authorization": f"Bearer {self.staff}"}
        )

    async def wait_for_saga(
        self,
        order_id: uuid.UUID,
        condition: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 60.0,
        saga: ServiceProcess | None = None,
    ) -> dict[str, Any]:
        """Poll the saga's API until `condition(view)` holds."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                response = await self.view(order_id, saga)
                if response.status_code == 200:
                    last = response.json()
                    if condition(last):
                        return dict(last)
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"saga {order_id} never met the condition; last view: {last}\n{self.saga.log_tail()}"
        )

    async def finished(self, order_id: uuid.UUID, **kwargs: Any) -> dict[str, Any]:
        return await self.wait_for_saga(order_id, lambda view: view["phase"] == "done", **kwargs)

    async def events(self, stream_id: str) -> list[RecordedEvent]:
        return await self.store.read_stream(stream_id)

    async def types(self, stream_id: str) -> list[str]:
        return [event.event_type for event in await self.events(stream_id)]


@pytest.fixture
def start_suite(
    fresh_database_url: str,
    saga_database_url: str,
    redis_url: str,
    kafka_bootstrap_servers: str,
    tmp_path: Path,
    tokens: TokenFactory,
) -> Callable[..., contextlib.AbstractAsyncContextManager[Suite]]:
    """`async with start_suite(sandbox={...}, saga={...}) as suite`: every process started and ready."""

    @contextlib.asynccontextmanager
    async def start(
        *, sandbox: dict[str, str] | None = None, saga: dict[str, str] | None = None
    ) -> AsyncIterator[Suite]:
        await migrate(fresh_database_url)
        prefix = f"saga{uuid.uuid4().hex[:8]}."
        await create_topics(kafka_bootstrap_servers, prefix)
        jwt = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
        command_env = {
            "DATABASE_URL": fresh_database_url,
            "REDIS_URL": redis_url,
            "COMMAND_RATE_LIMIT_PER_SECOND": "10000",
            "COMMAND_RATE_LIMIT_BURST": "10000",
            **jwt,
        }
        relay_env = {
            "DATABASE_URL": fresh_database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
            "RELAY_TOPIC_PREFIX": prefix,
            "RELAY_PARTITIONS": "3",
            "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
        }
        sandbox_env = {
            "SANDBOX_SECRET": PROVIDER_SECRET,
            "SANDBOX_LATENCY_MS": "50",
            "SANDBOX_JITTER_MS": "50",
            **(sandbox or {}),
        }
        pool = await connect(fresh_database_url, min_size=1, max_size=2)
        store = PostgresEventStore(pool, build_registry())
        async with contextlib.AsyncExitStack() as stack:

            async def process(module: str, env: dict[str, str], port_variable: str) -> ServiceProcess:
                name = module.split(".")[-1].removesuffix("_service")
                return await stack.enter_async_context(
                    running_service(
                        module, env, log=tmp_path / f"{name}.log", port_variable=port_variable, ready=False
                    )
                )

            # Started together and waited for together: each start-up costs seconds on a busy machine.
            command_process = await process("command_service", command_env, "COMMAND_PORT")
            relay_process = await process("relay_service", relay_env, "RELAY_PORT")
            sandbox_process = await process("saga_service.sandbox", sandbox_env, "SANDBOX_PORT")
            saga_env = {
                "SAGA_DATABASE_URL": saga_database_url,
                "REDIS_URL": redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
                "SAGA_COMMAND_URL": command_process.url,
                "SAGA_PROVIDER_URL": sandbox_process.url,
                "SAGA_PROVIDER_SECRET": PROVIDER_SECRET,
                "SAGA_TOPIC_PREFIX": prefix,
                "SAGA_GROUP_ID": f"saga-{prefix}",
                "SAGA_DEAD_LETTER_TOPIC": f"{prefix}saga.dead-letters",
                "SAGA_WAKE_GRACE": "2",
                "SAGA_RETRY_BASE_DELAY": "0.02",
                "SAGA_RATE_LIMIT_PER_SECOND": "10000",
                "SAGA_RATE_LIMIT_BURST": "10000",
                **jwt,
                **(saga or {}),
            }
            saga_process = await process("saga_service", saga_env, "SAGA_PORT")
            stack.push_async_callback(pool.close)
            stack.push_async_callback(store.close)
            await asyncio.gather(
                *(p.ready() for p in (command_process, relay_process, sandbox_process, saga_process))
            )
            yield Suite(
                command=command_process,
                sandbox=sandbox_process,
                saga=saga_process,
                store=store,
                tokens=tokens,
                prefix=prefix,
                saga_env=saga_env,
            )

    return start
