"""`create_app(settings)`: the one place where the command service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import httpx
import redis.asyncio as redis
from eventstore.connection import connect
from eventstore.errors import EventStoreError
from eventstore.migrations import migrate
from eventstore.postgres import PostgresEventStore
from fulfilment.registry import build_registry
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.types import Message, Scope
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.access import access_check, require_access_check
from servicekit.auth import build_verifier
from servicekit.health import postgres_check
from servicekit.observability import Observability
from servicekit.openapi import StrictStructSchemaPlugin
from servicekit.ratelimit import RateLimiter
from servicekit.requests import ServiceRequest

from command_service.handling import Services
from command_service.idempotency import IdempotencyKeys
from command_service.openapi import openapi_config
from command_service.problems import PROBLEMS
from command_service.routes.conventions import COMMAND_RESPONSE_HEADERS, provide_command_request
from command_service.routes.orders import OrderController
from command_service.routes.payments import PaymentController
from command_service.routes.stock import StockController
from command_service.settings import CommandSettings

__all__ = ["create_app"]

log = logging.getLogger("command_service")

PURGE_INTERVAL_SECONDS = 600.0
# The service's own tables live in schema `command`, migrated from its sql/ folder under a lock of
# its own (an arbitrary constant, "command" in ASCII) so its runs queue apart from the event store's.
MIGRATION_LOCK_KEY = 0x636F6D6D616E64


def create_app(
    settings: CommandSettings,
    *,
    span_exporter: SpanExporter | None = None,
    jwks_client: httpx.AsyncClient | None = None,
) -> Litestar:
    """The command service as an ASGI app; its pool and Redis client live for the app's lifespan."""
    verifier = build_verifier(settings, jwks_client)
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    limiter = RateLimiter(
        redis_client, per_second=settings.rate_limit_per_second, burst=settings.rate_limit_burst
    )
    observability = Observability(settings, "command", span_exporter=span_exporter)
    pools: dict[str, asyncpg.Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await migrate(settings.database_url)
        sql = resources.files("command_service") / "sql"
        await migrate(settings.database_url, sql, schema="command", lock_key=MIGRATION_LOCK_KEY)
        pool = await connect(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            application_name="command-service",
        )
        pools["postgres"] = pool
        store = PostgresEventStore(pool, build_registry())
        keys = IdempotencyKeys(pool, ttl_seconds=settings.idempotency_ttl_seconds)
        app.state.services = Services(
            pool=pool, store=store, registry=store.registry, keys=keys, max_attempts=settings.max_attempts
        )
        purging = asyncio.create_task(_purge_expired_keys(keys), name="purge-idempotency-keys")
        log.info("command service ready")
        try:
            yield
        finally:
            # The server has let in-flight requests finish before the lifespan ends.
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
            await store.close()
            await limiter.close()
            await redis_client.aclose()
            await asyncio.wait_for(pool.close(), timeout=settings.shutdown_timeout_seconds)
            observability.shutdown()
            log.info("command service stopped")

    access = access_check(verifier, limiter)
    commands = Router(
        path="/",
        route_handlers=[OrderController, StockController, PaymentController],
        before_request=access,
        dependencies={"command_request": Provide(provide_command_request)},
        response_headers=COMMAND_RESPONSE_HEADERS,
    )
    app = observability.instrument(
        Litestar(
            route_handlers=[
                commands,
                *observability.routes(ready={"postgres": postgres_check(lambda: pools.get("postgres"))}),
            ],
            lifespan=[lifespan],
            dependencies={
                "services": Provide(_services, sync_to_thread=False, use_cache=True),
            },
            exception_handlers={Exception: PROBLEMS.handler},
            before_send=[_no_store],
            request_class=ServiceRequest,
            request_max_body_size=settings.max_body_bytes,
            openapi_config=openapi_config(),
            plugins=[StrictStructSchemaPlugin()],
            logging_config=None,
        )
    )
    require_access_check(app, access)
    return app


async def _no_store(message: Message, scope: Scope) -> None:
    # Every answer is about state that changes with the next command (or a refusal of one): no cache,
    # shared or private, may keep it.
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), (b"cache-control", b"no-store")]


def _services(state: State) -> Services:
    services: Services = state.services
    return services


async def _purge_expired_keys(keys: IdempotencyKeys) -> None:
    # Expired keys are already ignored by lookups; deleting them only keeps the table small, so it can wait.
    while True:
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
        try:
            purged = await keys.purge_expired()
            if purged:
                log.info("purged expired idempotency keys", extra={"purged": purged})
        except EventStoreError as error:
            log.warning("could not purge idempotency keys: %s", error)
