"""`create_app(settings)`: the command service, declared to the kit's `Service`."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from importlib import resources

import httpx
import redis.asyncio as redis
from eventstore import TRANSIENT
from eventstore.connection import pool_for
from eventstore.errors import EventStoreError
from eventstore.migrations import migrate
from eventstore.postgres import PostgresEventStore
from fulfilment.registry import build_registry
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.types import Message, Scope
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.access import access_check
from servicekit.auth import build_verifier
from servicekit.health import postgres_check
from servicekit.openapi import StrictStructSchemaPlugin
from servicekit.ratelimit import RateLimiter
from servicekit.service import Closer, Service, Startup

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
    """The command service: its pool, idempotency keys and Redis rate limits, the command routes."""
    service = Service(settings, "command", problems=PROBLEMS, span_exporter=span_exporter)
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    limiter = RateLimiter(
        redis_client, per_second=settings.rate_limit_per_second, burst=settings.rate_limit_burst
    )
    access = access_check(build_verifier(settings, jwks_client), limiter)
    commands = Router(
        path="/",
        route_handlers=[OrderController, StockController, PaymentController],
        before_request=access,
        dependencies={"command_request": Provide(provide_command_request)},
        response_headers=COMMAND_RESPONSE_HEADERS,
    )
    return service.app(
        [commands],
        start=partial(_start, settings, service, closing=[redis_client.aclose, limiter.close]),
        provides=["services"],
        access=access,
        openapi=openapi_config(),
        plugins=[StrictStructSchemaPlugin()],
        max_body_bytes=settings.max_body_bytes,
        before_send=[_no_store],
    )


async def _start(settings: CommandSettings, service: Service, run: Startup, *, closing: list[Closer]) -> None:
    for close in closing:
        run.on_stop(close)
    url = settings.database_url

    async def migrated() -> None:
        await migrate(url)
        await migrate(
            url, resources.files("command_service") / "sql", schema="command", lock_key=MIGRATION_LOCK_KEY
        )

    await run.connect("postgres", url, migrated, transient=TRANSIENT)
    opened, closed = pool_for(settings, "command-service")
    pool = await run.connect("postgres", url, opened, close=closed, transient=TRANSIENT)
    store = PostgresEventStore(pool, build_registry(), tracer=service.tracer)
    run.on_stop(store.close)
    run.ready("postgres", postgres_check(lambda: pool))
    keys = IdempotencyKeys(pool, ttl_seconds=settings.idempotency_ttl_seconds)
    services = Services(
        pool=pool, store=store, registry=store.registry, keys=keys, max_attempts=settings.max_attempts
    )
    run.provide("services", services)
    run.spawn("purge-idempotency-keys", lambda: _purge_expired_keys(keys), transient=TRANSIENT)


async def _no_store(message: Message, scope: Scope) -> None:
    # Every answer is about state that changes with the next command (or a refusal of one): no cache,
    # shared or private, may keep it.
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), (b"cache-control", b"no-store")]


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
