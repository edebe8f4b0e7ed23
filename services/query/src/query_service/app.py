"""`create_app(settings)`: the query service, declared to the kit's `Service`."""

from __future__ import annotations

from functools import partial

import httpx
import redis.asyncio as redis
from litestar import Litestar, Router
from opentelemetry.sdk.trace.export import SpanExporter
from readmodels.keyspace import Keyspace
from readmodels.order_queries import OrderSearchReader
from readmodels.orders import orders_alias
from readmodels.redis_reads import REDIS_TRANSIENT, LiveHashes
from servicekit.access import access_check
from servicekit.auth import build_verifier
from servicekit.openapi import StrictStructSchemaPlugin, api_openapi_config
from servicekit.ratelimit import RateLimiter
from servicekit.service import Service, Startup

from query_service.consistency import PositionWatch, SearchVisibility
from query_service.problems import PROBLEMS
from query_service.routes.conventions import Reads
from query_service.routes.orders import CustomerController, OrderController
from query_service.routes.stock import StockController
from query_service.settings import QuerySettings

__all__ = ["create_app"]

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
    """The query service: its Redis and search clients, the position watch, the read routes."""
    service = Service(settings, "query", problems=PROBLEMS, span_exporter=span_exporter)
    reads = _reads(settings)
    # Reads come faster than commands: larger leases spend one Redis call per 50 requests of a
    # subject instead of per 10 (every request is still paid for; see servicekit.ratelimit).
    limiter = RateLimiter(
        reads.redis,
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        lease=50,
        prefix="ratelimit:query:",
    )
    access = access_check(build_verifier(settings, jwks_client), limiter)
    queries = Router(
        path="/",
        route_handlers=[OrderController, CustomerController, StockController],
        before_request=access,
        security=[{"bearer": []}],
    )
    return service.app(
        [queries],
        start=partial(_start, reads),
        provides={"reads": reads},
        access=access,
        openapi=api_openapi_config(title="Fulfilment query API", description=DESCRIPTION),
        plugins=[StrictStructSchemaPlugin()],
    )


def _reads(settings: QuerySettings) -> Reads:
    # A bounded pool that requests wait on (up to the consistency timeout) when every connection is
    # busy: a burst of reads queues instead of failing; only a pool still exhausted by then is a 503.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.query_redis_connections,
        timeout=settings.query_consistency_timeout_seconds,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )
    redis_client = redis.Redis(connection_pool=pool)
    # Blocks on its subscription, so it gets no read timeout (and a connection of its own).
    subscriber = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, decode_responses=True)
    keyspace = Keyspace(settings.query_key_prefix)
    search = OrderSearchReader(
        settings.search_url,
        orders_alias(settings.query_key_prefix),
        timeout=settings.query_search_timeout_seconds,
        connections=settings.query_search_connections,
        cursor_key=settings.cursor_key(),
    )
    return Reads(
        redis=redis_client,
        keyspace=keyspace,
        hashes=LiveHashes(redis_client, keyspace),
        search=search,
        watch=PositionWatch(redis_client, subscriber, keyspace),
        visibility=SearchVisibility(search, redis_client, keyspace),
        consistency_timeout=settings.query_consistency_timeout_seconds,
    )


async def _start(reads: Reads, run: Startup) -> None:
    # Neither store has to answer for the service to start: reads of the one that answers go on.
    run.on_stop(reads.redis.aclose)
    run.on_stop(reads.watch.close)
    run.on_stop(reads.search.close)
    run.ready("redis", partial(_redis_answers, reads.redis))
    run.ready("search", reads.search.ping)
    run.spawn("position-announcements", reads.watch.run, transient=REDIS_TRANSIENT)


async def _redis_answers(client: redis.Redis) -> str | None:
    await client.ping()
    return None
