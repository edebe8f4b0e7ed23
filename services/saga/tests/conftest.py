"""The suite around the saga, as real processes (command service, relay, payment sandbox, saga:
`start_suite`), or with the command service and the sandbox in-process and saga instances driven
directly (`world`).

Each test gets its own event store database, its own saga database (the saga's
streams and timers may live apart from the domain's store: `SAGA_DATABASE_URL`),
and, with processes, its own topics and consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from command_service.app import create_app as create_command_app
from command_service.settings import CommandSettings
from eventstore import PostgresEventStore, RecordedEvent, connect, migrate
from fulfilment import order_stream
from fulfilment.registry import build_registry
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from saga_service.commands import CommandClient, ServiceToken
from saga_service.consumer import to_input
from saga_service.events import build_saga_registry
from saga_service.migrations import migrate_saga_schema
from saga_service.orchestrator import Orchestrator
from saga_service.providers import SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, RetryPolicy
from saga_service.saga import Begin, saga_decider
from saga_service.sandbox.app import create_app as create_sandbox_app
from saga_service.sandbox.settings import SandboxSettings
from saga_service.streams import SagaStreams
from saga_service.timers import Timers
from testkit.harness import (
    ServiceProcess,
    TokenFactory,
    lifespan_of,
    running_service,
    token_factory,
)

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

    async def stock(self, sku: str, quantity: int, *, price: int = 500) -> None:
        """Register a product for sale at `price` EUR cents and receive `quantity` units of it."""
        body = {"sku": sku, "name": sku, "unit_price": price, "currency": "EUR"}
        response = await self.post(self.command.url, "/products", self.staff, body)
        assert response.status_code == 201, response.text
        await self.receive(sku, quantity)

    async def receive(self, sku: str, quantity: int) -> None:
        response = await self.post(
            self.command.url, f"/products/{sku}/receipts", self.staff, {"quantity": quantity}
        )
        assert response.status_code == 200, response.text

    async def place(self, customer: str, *lines: tuple[str, int]) -> uuid.UUID:
        """Place an order as `customer` (prices are the catalogue's); returns its id."""
        body = {"lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines], "currency": "EUR"}
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


class World:
    """The command service and the sandbox in-process (the sandbox never answers), and saga instances.

    Sagas are started and driven directly, without Kafka: `begin` turns the order's `OrderPlaced`,
    as stored, into the saga's input exactly as the consumer does.
    """

    def __init__(
        self,
        store_url: str,
        saga_url: str,
        command: httpx.AsyncClient,
        sandbox: httpx.AsyncClient,
        store: PostgresEventStore,
        tokens: TokenFactory,
    ) -> None:
        self.store_url = store_url
        self.saga_url = saga_url
        self.command = command
        self.sandbox = sandbox
        self.store = store
        self.tokens = tokens

    async def post(self, path: str, token: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        return await self.command.post(path, json=body, headers=headers)

    async def staff(self, path: str, body: Any = None) -> None:
        """A staff command that must succeed (registering, pricing, receiving...)."""
        response = await self.post(path, self.tokens("staff-1", ["staff"]), body)
        assert response.is_success, response.text

    async def place(self, customer: str, *lines: tuple[str, int]) -> uuid.UUID:
        """Place an order as `customer` (prices are the catalogue's); returns its id."""
        body = {"lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines], "currency": "EUR"}
        response = await self.post("/orders", self.tokens(customer, ["customer"]), body)
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["order_id"])

    async def begin(self, order_id: uuid.UUID) -> Begin:
        """The saga's input for the order, from its `OrderPlaced` as the relay would publish it."""
        placed = (await self.store.read_stream(order_stream(order_id)))[0]
        begin = to_input(placed.event_type, msgspec.json.encode(placed.data))
        assert isinstance(begin, Begin)
        return begin

    @contextlib.asynccontextmanager
    async def instance(
        self, owner: str, *, payment_timeout: float, command: httpx.AsyncClient | None = None
    ) -> AsyncIterator[Orchestrator]:
        pool = await connect(self.saga_url, min_size=1, max_size=8)
        store = PostgresEventStore(pool, build_saga_registry())
        timers = Timers(pool, owner=owner, lease_seconds=30, wake_grace=0.5)
        metrics = BreakerMetrics(CollectorRegistry())
        policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1)
        token = ServiceToken(fixed=None, secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
        orchestrator = Orchestrator(
            SagaStreams(store, timers, saga_decider(timedelta(seconds=payment_timeout)).decide),
            CommandClient(
                command or self.command,
                token,
                CircuitBreaker("command", metrics, failures=5, reset_seconds=1),
                policy,
            ),
            SandboxProvider(
                self.sandbox,
                PROVIDER_SECRET,
                CircuitBreaker("provider", metrics, failures=5, reset_seconds=1),
                policy,
            ),
            TracerProvider().get_tracer("test"),
            callback_url="http://127.0.0.1:9/never-called",
            concurrency=16,
        )
        try:
            yield orchestrator
        finally:
            await orchestrator.close()
            await store.close()
            await pool.close()


@pytest.fixture
async def world(
    fresh_database_url: str, saga_database_url: str, redis_url: str, tokens: TokenFactory
) -> AsyncIterator[World]:
    """MUG (3.00 EUR, 1000 units) for sale; the command service and a silent sandbox in-process."""
    await migrate(fresh_database_url)
    await migrate(saga_database_url)
    await migrate_saga_schema(saga_database_url)
    command_settings = msgspec.convert(
        {
            "database_url": fresh_database_url,
            "redis_url": redis_url,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_secret": SECRET,
            "rate_limit_per_second": 10000.0,
            "rate_limit_burst": 10000,
        },
        CommandSettings,
    )
    command_app = create_command_app(command_settings)
    sandbox_app = create_sandbox_app(
        SandboxSettings(sandbox_secret=PROVIDER_SECRET, sandbox_silence_rate=1.0)
    )
    async with (
        lifespan_of(command_app),
        lifespan_of(sandbox_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=command_app), base_url="http://command"
        ) as command,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sandbox_app), base_url="http://sandbox"
        ) as sandbox,
        contextlib.AsyncExitStack() as stack,
    ):
        pool = await connect(fresh_database_url, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        store = PostgresEventStore(pool, build_registry())
        stack.push_async_callback(store.close)
        world = World(fresh_database_url, saga_database_url, command, sandbox, store, tokens)
        await world.staff("/products", {"sku": "MUG", "name": "Mug", "unit_price": 300, "currency": "EUR"})
        await world.staff("/products/MUG/receipts", {"quantity": 1000})
        yield world
