"""`create_app(settings)`: the one place where the query service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as redis
from litestar import Litestar, Router
from opentelemetry.sdk.trace.export import SpanExporter
from readmodels.keyspace import Keyspace
from readmodels.order_queries import OrderSearchReader
from readmodels.orders import orders_alias
from readmodels.redis_reads import LiveHashes
from servicekit.access import access_check, require_access_check
from servicekit.auth import build_verifier
from servicekit.observability import Observability
from servicekit.openapi import StrictStructSchemaPlugin, api_openapi_config
from servicekit.ratelimit import RateLimiter
from servicekit.requests import ServiceRequest

from query_service.consistency import PositionWatch, SearchVisibility
from query_service.problems import PROBLEMS
from query_service.routes.conventions import Reads
from query_service.routes.orders import CustomerController, OrderController
from query_service.routes.stock import StockController
from query_service.settings import QuerySettings

__all__ = ["create_app"]

log = logging.getLogger("query_service")

DESCRIPTION = (
    "Reads over the read models the projector keeps: orders by id and recent orders from Redis, order "
    "search and per-customer counts from the search engine, stock per SKU. Every read needs a bearer "
    "token; customers see only their own orders. Send a command's `position` as `X-Consistency-Token` "
    "to read your own write. Errors are RFC 9457 problem details (`application/problem+json`)."
)


def create_app(
    settings: QuerySettings,
    *,
    span_exporter: SpanExporter | None = None,
    jwks_client: httpx.AsyncClient | None = None,
) -> Litestar:
    """The query service as an ASGI app; its Redis and search clients live for the app's lifespan."""
    verifier = build_verifier(settings, jwks_client)
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
    )
    # Blocks on its subscription, so it gets no read timeout (and a connection of its own).
    subscriber = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, decode_responses=True)
    # Reads come faster than commands: larger leases spend one Redis call per 50 requests of a
    # subject instead of per 10 (every request is still paid for; see servicekit.ratelimit).
    limiter = RateLimiter(
        redis_client,
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        lease=50,
        prefix="ratelimit:query:",
    )
    observability = Observability(settings, "query", span_exporter=span_exporter, trace_postgres=False)
    keyspace = Keyspace(settings.query_key_prefix)
    search = OrderSearchReader(
        settings.search_url,
        orders_alias(settings.query_key_prefix),
        timeout=settings.query_search_timeout_seconds,
        connections=settings.query_search_connections,
    )
    watch = PositionWatch(redis_client, subscriber, keyspace)
    reads = Reads(
        redis=redis_client,
        keyspace=keyspace,
        hashes=LiveHashes(redis_client, keyspace),
        search=search,
        watch=watch,
        visibility=SearchVisibility(search, redis_client, keyspace),
        consistency_timeout=settings.query_consistency_timeout_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.reads = reads
        # Neither store has to answer for the process to start: reads of the one that answers go on.
        watching = asyncio.create_task(watch.run(), name="position-announcements")
        log.info("query service ready")
        try:
            yield
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await search.close()
            await subscriber.aclose()
            await redis_client.aclose()
            observability.shutdown()
            log.info("query service stopped")

    async def redis_answers() -> str | None:
        await redis_client.ping()
        return None

    async def search_answers() -> str | None:
        await search.ping()
        return None

    access = access_check(verifier, limiter)
    queries = Router(
        path="/",
        route_handlers=[OrderController, CustomerController, StockController],
        before_request=access,
        security=[{"bearer": []}],
    )
    app = observability.instrument(
        Litestar(
            route_handlers=[
                queries,
                *observability.routes(ready={"redis": redis_answers, "search": search_answers}),
            ],
            lifespan=[lifespan],
            exception_handlers={Exception: PROBLEMS.handler},
            request_class=ServiceRequest,
            openapi_config=api_openapi_config(title="Fulfilment query API", description=DESCRIPTION),
            plugins=[StrictStructSchemaPlugin()],
            logging_config=None,
        )
    )
    require_access_check(app, access)
    return app
