"""`create_app(settings)`: the one place where the saga service is wired together.

The lifespan migrates the store and the saga's tables, opens the pool and the
HTTP clients, starts the Kafka consumer (FastStream) and the timer loop, and
stops them in reverse. HTTP serves the admin API, the provider's webhook, and the
kit's health and metrics endpoints (the breakers' state is among the metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import redis.asyncio as redis
from eventstore import PostgresEventStore, connect
from eventstore.migrations import migrate as migrate_event_store
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.access import access_check, require_access_check
from servicekit.auth import build_verifier
from servicekit.health import postgres_check
from servicekit.observability import Observability
from servicekit.ratelimit import RateLimiter
from servicekit.requests import ServiceRequest

from saga_service.commands import CommandClient, ServiceToken
from saga_service.consumer import build_broker, ensure_topics
from saga_service.events import build_registry
from saga_service.migrations import migrate as migrate_saga_schema
from saga_service.orchestrator import Orchestrator
from saga_service.providers import SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, RetryPolicy
from saga_service.routes import PROBLEMS, SagaController, WebhookController
from saga_service.saga import saga_decider
from saga_service.sagas import SagaStreams
from saga_service.settings import SagaSettings
from saga_service.timers import Timers

__all__ = ["create_app"]

log = logging.getLogger("saga_service")


def create_app(settings: SagaSettings, *, span_exporter: SpanExporter | None = None) -> Litestar:
    """The saga service as an ASGI app; its consumer and timers run for the app's lifespan."""
    # One line per outgoing request at INFO would double the log; failures are logged where handled.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    verifier = build_verifier(settings)
    token = ServiceToken(
        fixed=settings.saga_service_token,
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    limiter = RateLimiter(
        redis_client,
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        prefix="ratelimit:saga:",
    )
    observability = Observability(settings, "saga", span_exporter=span_exporter)
    breaker_metrics = BreakerMetrics(observability.registry)
    policy = RetryPolicy(
        attempts=settings.saga_retry_attempts,
        base_delay=settings.saga_retry_base_delay,
        max_delay=settings.saga_retry_max_delay,
    )

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            breaker_metrics,
            failures=settings.saga_breaker_failures,
            reset_seconds=settings.saga_breaker_reset,
        )

    command_breaker, provider_breaker = breaker("command"), breaker("provider")
    owner = f"{socket.gethostname()}:{os.getpid()}:{settings.port}"
    callback_url = (settings.saga_public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await migrate_event_store(settings.database_url)
        await migrate_saga_schema(settings.database_url)
        pool = await connect(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            application_name="saga-service",
        )
        state["pool"] = pool
        timeout = httpx.Timeout(settings.saga_http_timeout)
        limits = httpx.Limits(max_connections=settings.saga_concurrency * 2)
        command_http = httpx.AsyncClient(base_url=settings.saga_command_url, timeout=timeout, limits=limits)
        provider_http = httpx.AsyncClient(base_url=settings.saga_provider_url, timeout=timeout, limits=limits)
        store = PostgresEventStore(pool, build_registry())
        timers = Timers(
            pool, owner=owner, lease_seconds=settings.saga_timer_lease, wake_grace=settings.saga_wake_grace
        )
        decider = saga_decider(timedelta(seconds=settings.saga_payment_timeout))
        orchestrator = Orchestrator(
            SagaStreams(store, timers, decider.decide),
            CommandClient(command_http, token, command_breaker, policy),
            SandboxProvider(provider_http, settings.saga_provider_secret, provider_breaker, policy),
            observability.tracer,
            callback_url=f"{callback_url}/webhooks/payments/sandbox",
            concurrency=settings.saga_concurrency,
            stuck_after=settings.saga_stuck_after,
        )
        app.state.orchestrator = orchestrator
        await ensure_topics(settings)
        broker = build_broker(settings, orchestrator, observability.registry)
        await broker.start()
        state["broker"] = broker
        timer_loop = asyncio.create_task(
            orchestrator.run_timers(poll=settings.saga_timer_poll, batch=settings.saga_timer_batch),
            name="saga-timers",
        )
        state["timers"] = timer_loop
        log.info("saga service ready", extra={"owner": owner})
        try:
            yield
        finally:
            timer_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer_loop
            await broker.stop()
            await orchestrator.close()
            await command_http.aclose()
            await provider_http.aclose()
            await store.close()
            await redis_client.aclose()
            await asyncio.wait_for(pool.close(), timeout=settings.shutdown_timeout_seconds)
            observability.shutdown()
            log.info("saga service stopped")

    async def consuming() -> str | None:
        return None if "broker" in state else "the Kafka consumer has not started"

    async def timers_run() -> str | None:
        task: asyncio.Task[None] | None = state.get("timers")
        if task is not None and task.done():
            error = task.exception() if not task.cancelled() else None
            return f"the timer loop ended: {error!r}"
        return None

    access = access_check(verifier, limiter)
    admin = Router(
        path="/",
        route_handlers=[SagaController],
        before_request=access,
    )
    app = observability.instrument(
        Litestar(
            route_handlers=[
                admin,
                WebhookController,
                *observability.routes(
                    ready={"postgres": postgres_check(lambda: state.get("pool")), "kafka": consuming},
                    live={"timers": timers_run},
                ),
            ],
            lifespan=[lifespan],
            dependencies={"orchestrator": Provide(_orchestrator, sync_to_thread=False, use_cache=True)},
            exception_handlers={Exception: PROBLEMS.handler},
            request_class=ServiceRequest,
            request_max_body_size=settings.max_body_bytes,
            logging_config=None,
        )
    )
    require_access_check(app, access)
    return app


def _orchestrator(state: State) -> Orchestrator:
    orchestrator: Orchestrator = state.orchestrator
    return orchestrator
