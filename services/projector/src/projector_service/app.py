"""`create_app(settings)`: the projector's process, declared to the kit's `Service`.

The consumers and position trackers run for the process's lifetime. HTTP serves
`/health/live`, `/health/ready` (Redis, the search engine and PostgreSQL answer,
and no projection is paused on a store outage), `/metrics`, and `/status`, the
projector's own report per projection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from eventstore import TRANSIENT as STORE_TRANSIENT
from eventstore import EventRegistry, connect
from fulfilment.registry import build_registry
from litestar import Litestar, get
from opentelemetry.sdk.trace.export import SpanExporter
from readmodels.search import SearchUnavailable, connect_search
from redis.asyncio import Redis
from servicekit.health import Check
from servicekit.service import Service, Startup

from projector_service.bootstrap import Projector
from projector_service.consumer import consumer_check
from projector_service.runner import TRANSIENT
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings

__all__ = ["create_app"]

# What Kafka fails with while a broker is down or restarting.
KAFKA_TRANSIENT = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)


def create_app(
    settings: ProjectorSettings,
    *,
    registry: EventRegistry | None = None,
    span_exporter: SpanExporter | None = None,
) -> Litestar:
    """The projector: connections, one consumer group per projection, the HTTP endpoints."""
    service = Service(settings, "projector", span_exporter=span_exporter, trace_postgres=False)
    events = registry or build_registry()
    running: list[ProjectorService] = []

    async def start(run: Startup) -> None:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        run.on_stop(redis.aclose)
        search = await run.connect(
            "search",
            settings.search_url,
            lambda: connect_search(settings.search_url),
            close=lambda search: search.close(),
            transient=(SearchUnavailable,),
        )
        pool = await run.connect(
            "postgres",
            settings.database_url,
            lambda: connect(settings.database_url, min_size=1, max_size=4),
            close=lambda pool: pool.close(),
            transient=STORE_TRANSIENT,
        )
        projector = Projector(settings, events, redis, search, pool)
        run.on_stop(projector.store.close)
        projector_service = ProjectorService(projector, registry=service.registry, tracer=service.tracer)
        run.on_stop(projector_service.stop)
        running.append(projector_service)
        for name in ("redis", "search", "postgres"):
            run.ready(name, store_check(projector_service, name))
        run.ready("consuming", consuming)
        run.ready("kafka", lambda: consumer_check(projector_service.broker))
        await run.connect(
            "kafka", settings.kafka_bootstrap_servers, projector_service.start, transient=KAFKA_TRANSIENT
        )
        run.spawn("trackers", lambda: trackers_of(projector_service), transient=TRANSIENT)

    def store_check(projector_service: ProjectorService, name: str) -> Check:
        async def check() -> str | None:
            return (await projector_service.checks())[name]

        return check

    async def consuming() -> str | None:
        projector_service = running[0]
        if not projector_service.started:
            return "starting"
        paused = {n: s.unavailable for n, s in projector_service.statuses.items() if s.unavailable}
        if paused:
            return "; ".join(f"{name} paused: {why}" for name, why in paused.items())
        return None

    async def report() -> dict[str, Any]:
        return await running[0].report() if running else {"projections": {}}

    async def refresh_metrics() -> None:
        await report()  # updates the gauges as it goes

    @get("/status", operation_id="status", summary="What each projection is doing", tags=["health"])
    async def status_route() -> dict[str, Any]:
        return await report()

    return service.app([status_route], start=start, refresh_metrics=refresh_metrics)


async def trackers_of(projector_service: ProjectorService) -> None:
    """Wait on the position trackers, which ride out store outages themselves: one that ends is fatal."""
    trackers = projector_service.tracker_tasks
    done, _ = await asyncio.wait(trackers, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()  # raises the error it ended with
    raise RuntimeError(f"{', '.join(task.get_name() for task in done)} ended")
