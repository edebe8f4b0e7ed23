"""`create_app(settings)`: the saga service, declared to the kit's `Service`.

Start-up migrates the store and the saga's tables, opens the pool and the HTTP
clients, starts the Kafka consumer (FastStream) and the timer loop; the kit
stops them in reverse. HTTP serves the admin API, the provider's webhook, and
the kit's health and metrics endpoints (the breakers' state is among the metrics).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from functools import partial

import httpx
import redis.asyncio as redis
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from eventstore import TRANSIENT, PostgresEventStore
from eventstore.connection import pool_for
from eventstore.migrations import migrate as migrate_event_store
from httpx_aiohttp import HttpxAiohttpClient
from litestar import Litestar, Router
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.access import access_check
from servicekit.auth import build_verifier
from servicekit.health import postgres_check
from servicekit.kafka import watch_fetching
from servicekit.openapi import api_openapi_config
from servicekit.ratelimit import RateLimiter
from servicekit.service import Closer, Service, Startup

from saga_service.commands import CommandClient, ServiceToken
from saga_service.consumer import build_broker, consumer_check, ensure_topics
from saga_service.events import build_saga_registry
from saga_service.gauges import SagaGauges
from saga_service.migrations import migrate_saga_schema
from saga_service.orchestrator import Orchestrator
from saga_service.providers import SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, RetryPolicy
from saga_service.routes import PROBLEMS, SagaController, WebhookController
from saga_service.saga import saga_decider
from saga_service.settings import SagaSettings
from saga_service.streams import SagaStreams
from saga_service.timers import Timers

__all__ = ["create_app"]

log = logging.getLogger("saga_service")

# What Kafka fails with while a broker is down or restarting.
KAFKA_TRANSIENT = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)

DESCRIPTION = (
    "The order-fulfilment saga's admin API: each saga's state, history and timers, the sagas that are "
    "stuck or parked, and the payment provider's webhook. Admin reads need a staff bearer token; the "
    "webhook is authenticated by its signature. Errors are RFC 9457 problem details."
)


def create_app(settings: SagaSettings, *, span_exporter: SpanExporter | None = None) -> Litestar:
    """The saga service: its store, timers, command and provider clients, consumer and admin routes."""
    # One line per outgoing request at INFO would double the log; failures are logged where handled.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    service = Service(settings, "saga", problems=PROBLEMS, span_exporter=span_exporter)
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    limiter = RateLimiter(
        redis_client,
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        prefix="ratelimit:saga:",
    )
    access = access_check(build_verifier(settings), limiter)
    admin = Router(path="/", route_handlers=[SagaController], before_request=access)
    gauges = SagaGauges(service.registry)
    return service.app(
        [admin, WebhookController],
        start=partial(_start, settings, service, closing=[redis_client.aclose], gauges=gauges),
        provides=["orchestrator"],
        access=access,
        openapi=api_openapi_config(title="Fulfilment saga API", description=DESCRIPTION),
        max_body_bytes=settings.max_body_bytes,
        refresh_metrics=gauges.refresh,
    )


async def _start(
    settings: SagaSettings, service: Service, run: Startup, *, closing: list[Closer], gauges: SagaGauges
) -> None:
    for close in closing:
        run.on_stop(close)
    url = settings.database_url

    async def migrated() -> None:
        await migrate_event_store(url)
        await migrate_saga_schema(url)

    await run.connect("postgres", url, migrated, transient=TRANSIENT)
    opened, closed = pool_for(settings, "saga-service")
    pool = await run.connect("postgres", url, opened, close=closed, transient=TRANSIENT)
    run.ready("postgres", postgres_check(lambda: pool))
    timeout = httpx.Timeout(settings.saga_http_timeout)
    limits = httpx.Limits(max_connections=settings.saga_concurrency * 2)
    # httpx's interface on aiohttp's connections: a fifth of httpx's own CPU per request.
    command_http = HttpxAiohttpClient(base_url=settings.saga_command_url, timeout=timeout, limits=limits)
    provider_http = HttpxAiohttpClient(base_url=settings.saga_provider_url, timeout=timeout, limits=limits)
    run.on_stop(provider_http.aclose)
    run.on_stop(command_http.aclose)
    # Nothing subscribes to the saga's own streams: no NOTIFY after its appends.
    store = PostgresEventStore(pool, build_saga_registry(), notify=False, tracer=service.tracer)
    run.on_stop(store.close)
    orchestrator = _orchestrator(settings, service, store, command_http, provider_http)
    run.on_stop(orchestrator.close)
    run.provide("orchestrator", orchestrator)
    gauges.orchestrator = orchestrator
    kafka = settings.kafka_bootstrap_servers
    await run.connect("kafka", kafka, lambda: ensure_topics(settings), transient=KAFKA_TRANSIENT)
    broker = build_broker(settings, orchestrator, service.registry)
    await run.connect("kafka", kafka, broker.start, transient=KAFKA_TRANSIENT)
    run.on_stop(broker.stop)
    run.ready("kafka", lambda: consumer_check(broker))
    fetching = partial(consumer_check, broker)
    stall = settings.consumer_stall_seconds
    run.spawn("kafka-watch", lambda: watch_fetching(fetching, kafka, stall_after=stall))
    timers = partial(orchestrator.run_timers, poll=settings.saga_timer_poll, batch=settings.saga_timer_batch)
    run.spawn("timers", timers, transient=TRANSIENT)


def _orchestrator(
    settings: SagaSettings,
    service: Service,
    store: PostgresEventStore,
    command_http: httpx.AsyncClient,
    provider_http: httpx.AsyncClient,
) -> Orchestrator:
    breakers = BreakerMetrics(service.registry)
    policy = RetryPolicy(
        attempts=settings.saga_retry_attempts,
        base_delay=settings.saga_retry_base_delay,
        max_delay=settings.saga_retry_max_delay,
    )

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name, breakers, failures=settings.saga_breaker_failures, reset_seconds=settings.saga_breaker_reset
        )

    token = ServiceToken(
        fixed=settings.saga_service_token,
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    owner = f"{socket.gethostname()}:{os.getpid()}:{settings.port}"
    timers = Timers(
        store.pool, owner=owner, lease_seconds=settings.saga_timer_lease, wake_grace=settings.saga_wake_grace
    )
    callback_url = (settings.saga_public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    return Orchestrator(
        SagaStreams(store, timers, saga_decider(timedelta(seconds=settings.saga_payment_timeout)).decide),
        CommandClient(command_http, token, breaker("command"), policy),
        SandboxProvider(provider_http, settings.saga_provider_secret, breaker("provider"), policy),
        service.tracer,
        callback_url=f"{callback_url}/webhooks/payments/sandbox",
        concurrency=settings.saga_concurrency,
        stuck_after=settings.saga_stuck_after,
    )
