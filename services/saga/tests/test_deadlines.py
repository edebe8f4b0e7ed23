"""Deadlines against real PostgreSQL, with the command service and the sandbox in-process.

Several orchestrators (each its own pool and owner name, as separate instances
would be) share one saga database; the sagas are started directly (no Kafka) and
wait for a provider that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from command_service.app import create_app as create_command_app
from command_service.settings import CommandSettings
from eventstore import PostgresEventStore, connect, migrate
from fulfilment import payment_stream
from fulfilment.registry import build_registry as build_fulfilment_registry
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from saga_service.commands import CommandClient, ServiceToken
from saga_service.events import SagaLine, build_registry
from saga_service.migrations import migrate as migrate_saga
from saga_service.orchestrator import Orchestrator
from saga_service.providers import SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, RetryPolicy
from saga_service.saga import Begin, Phase, saga_decider
from saga_service.sagas import SagaStreams
from saga_service.sandbox.app import create_app as create_sandbox_app
from saga_service.sandbox.settings import SandboxSettings
from saga_service.timers import Timers
from servicekit.testing import TokenFactory, lifespan_of

from services.saga.tests.conftest import AUDIENCE, ISSUER, PROVIDER_SECRET, SECRET

pytestmark = pytest.mark.slow


class World:
    """The command service and the sandbox in-process, and a way to make saga instances."""

    def __init__(
        self, store_url: str, saga_url: str, command: httpx.AsyncClient, sandbox: httpx.AsyncClient
    ) -> None:
        self.store_url = store_url
        self.saga_url = saga_url
        self.command = command
        self.sandbox = sandbox

    @contextlib.asynccontextmanager
    async def instance(
        self, owner: str, *, payment_timeout: float, command: httpx.AsyncClient | None = None
    ) -> AsyncIterator[Orchestrator]:
        pool = await connect(self.saga_url, min_size=1, max_size=8)
        store = PostgresEventStore(pool, build_registry())
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
    await migrate(fresh_database_url)
    await migrate(saga_database_url)
    await migrate_saga(saga_database_url)
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
    ):
        staff = {"Authorization": f"Bearer {tokens('staff-1', ['staff'])}"}
        for path, body in (
            ("/products", {"sku": "MUG", "name": "Mug"}),
            ("/products/MUG/receipts", {"quantity": 1000}),
        ):
            response = await command.post(
                path, json=body, headers={**staff, "Idempotency-Key": str(uuid.uuid4())}
            )
            assert response.is_success, response.text
        yield World(fresh_database_url, saga_database_url, command, sandbox)


async def start_waiting_sagas(
    world: World, orchestrator: Orchestrator, tokens: TokenFactory, count: int
) -> list[uuid.UUID]:
    """Place `count` orders and drive each saga until it waits for the provider."""
    customer = {"Authorization": f"Bearer {tokens('kim', ['customer'])}"}
    order_ids = []
    for _ in range(count):
        response = await world.command.post(
            "/orders",
            json={"lines": [{"sku": "MUG", "quantity": 1, "unit_price": 300}], "currency": "EUR"},
            headers={**customer, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        order_id = uuid.UUID(response.json()["order_id"])
        begin = Begin(
            order_id=order_id,
            customer_id="kim",
            lines=(SagaLine(sku="mug", quantity=1),),
            currency="EUR",
            total=300,
            at=datetime.now(UTC),
        )
        await orchestrator.record(order_id, begin)
        applied = await orchestrator.drive(order_id)
        assert applied.state is not None
        assert applied.state.phase is Phase.PAYING
        order_ids.append(order_id)
    return order_ids


async def wait_until_done(
    orchestrator: Orchestrator, order_ids: list[uuid.UUID], timeout: float = 60
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            states = [(await orchestrator.streams.load(order_id)).state for order_id in order_ids]
            if all(state is not None and state.phase is Phase.DONE for state in states):
                return
            await asyncio.sleep(0.1)


async def test_two_instances_never_both_act_on_one_deadline(world: World, tokens: TokenFactory) -> None:
    async with world.instance("a", payment_timeout=0.5) as a, world.instance("b", payment_timeout=0.5) as b:
        order_ids = await start_waiting_sagas(world, a, tokens, 24)
        loops = [
            asyncio.create_task(a.run_timers(poll=0.01, batch=2)),
            asyncio.create_task(b.run_timers(poll=0.01, batch=2)),
        ]
        try:
            await wait_until_done(a, order_ids)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        firers: Counter[str] = Counter()
        pool = await connect(world.store_url, min_size=1, max_size=2)
        store = PostgresEventStore(pool, build_fulfilment_registry())
        for order_id in order_ids:
            history = [event.event_type for event in await a.streams.read(order_id)]
            assert history.count("DeadlineFired") == 1, history
            assert history.count("CompensationStarted") == 1, history
            [deadline] = [timer for timer in await a.timers.of(order_id) if timer.kind == "payment"]
            assert deadline.fired_at is not None
            assert deadline.fired_by in ("a", "b")
            firers[deadline.fired_by] += 1
            assert [e.event_type for e in await store.read_stream(payment_stream(order_id))] == [
                "PaymentRequested",
                "PaymentVoided",
            ]
        await store.close()
        await pool.close()
        assert sum(firers.values()) == len(order_ids)


async def test_deadlines_survive_the_instance_that_set_them(world: World, tokens: TokenFactory) -> None:
    async with world.instance("gone", payment_timeout=0.3) as gone:
        [order_id] = await start_waiting_sagas(world, gone, tokens, 1)
    # The instance that set the deadline is gone (its pool closed); another one fires it.
    async with world.instance("next", payment_timeout=0.3) as successor:
        loop = asyncio.create_task(successor.run_timers(poll=0.01, batch=10))
        try:
            await wait_until_done(successor, [order_id])
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        state = (await successor.streams.load(order_id)).state
        assert state is not None
        assert state.reason == "payment not answered before its deadline"
        [deadline] = [timer for timer in await successor.timers.of(order_id) if timer.kind == "payment"]
        assert deadline.fired_by == "next"


async def test_a_claimed_timer_is_not_claimed_again_until_its_lease_runs_out(
    world: World, tokens: TokenFactory
) -> None:
    async with world.instance("a", payment_timeout=0.01) as a, world.instance("b", payment_timeout=0.01) as b:
        [order_id] = await start_waiting_sagas(world, a, tokens, 1)
        await asyncio.sleep(0.05)
        claimed = await a.timers.claim(10)
        assert [timer.saga_id for timer in claimed] == [order_id]
        assert await b.timers.claim(10) == []
        # The claimer "dies" without firing: once the lease is over, another instance claims it.
        await a.streams.pool.execute("UPDATE saga.timers SET claimed_until = now() - interval '1 second'")
        assert [timer.saga_id for timer in await b.timers.claim(10)] == [order_id]


async def test_a_deadline_fired_while_the_command_service_is_down_is_carried_on_later(
    world: World, tokens: TokenFactory
) -> None:
    async with world.instance("a", payment_timeout=0.2) as healthy:
        [order_id] = await start_waiting_sagas(world, healthy, tokens, 1)
    unreachable = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1)
    async with world.instance("cut-off", payment_timeout=0.2, command=unreachable) as cut_off:
        loop = asyncio.create_task(cut_off.run_timers(poll=0.01, batch=10))
        try:
            async with asyncio.timeout(30):
                while True:
                    timers = {timer.kind: timer for timer in await cut_off.timers.of(order_id)}
                    if "wake" in timers and timers["wake"].attempts >= 1:
                        break
                    await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        state = (await cut_off.streams.load(order_id)).state
        assert state is not None
        assert state.phase is Phase.COMPENSATING  # the deadline fired; nothing could be undone yet
        assert timers["payment"].fired_by == "cut-off"
    await unreachable.aclose()
    async with world.instance("b", payment_timeout=0.2) as recovered:
        loop = asyncio.create_task(recovered.run_timers(poll=0.01, batch=10))
        try:
            await wait_until_done(recovered, [order_id])
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        history = [event.event_type for event in await recovered.streams.read(order_id)]
        assert history.count("DeadlineFired") == 1
        state = (await recovered.streams.load(order_id)).state
        assert state is not None
        assert state.outcome is not None
        assert state.outcome.value == "rejected"
