"""`create_app(settings)`: the projector's process, declared to the kit's `Service`.

The consumers and position trackers run for the process's lifetime. HTTP serves
`/health/live`, `/health/ready` (Redis, the search engine and PostgreSQL answer,
and no projection is paused on a store outage), `/metrics`, and `/status`, the
projector's own report per projection.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from eventstore import TRANSIENT as STORE_TRANSIENT
from eventstore import EventRegistry, connect
from fulfilment.registry import build_registry
from litestar import Litestar, get
from litestar.di import NamedDependency
from opentelemetry.sdk.trace.export import SpanExporter
from readmodels.redis_reads import REDIS_TRANSIENT
from readmodels.search import SEARCH_TRANSIENT, connect_search
from redis.asyncio import Redis
from servicekit.kafka import watch_fetching
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
    service = Service(settings, "projector", span_exporter=span_exporter)
    process = ProjectorProcess(settings, registry or build_registry(), service)
    return service.app(
        [status_route],
        start=process.start,
        provides={"projector": process},
        refresh_metrics=process.refresh_metrics,
    )


class ProjectorProcess:
    """What the projector's start-up, routes and metrics share: once started, its `ProjectorService`."""

    def __init__(self, settings: ProjectorSettings, registry: EventRegistry, service: Service) -> None:
        self.settings = settings
        self.registry = registry
        self.service = service
        self.running: ProjectorService | None = None

    async def start(self, run: Startup) -> None:
        settings = self.settings
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        run.on_stop(redis.aclose)
        await run.connect("redis", settings.redis_url, redis.ping, transient=REDIS_TRANSIENT)
        search = await run.connect(
            "search",
            settings.search_url,
            lambda: connect_search(settings.search_url),
            close=lambda search: search.close(),
            transient=SEARCH_TRANSIENT,
        )
        pool = await run.connect(
            "postgres",
            settings.database_url,
            lambda: connect(settings.database_url, min_size=1, max_size=4),
            close=lambda pool: pool.close(),
            transient=STORE_TRANSIENT,
        )
        projector = Projector(settings, self.registry, redis, search, pool)
        run.on_stop(projector.store.close)
        running = ProjectorService(projector, registry=self.service.registry, tracer=self.service.tracer)
        run.on_stop(running.stop)
        self.running = running
        for name in ("redis", "search", "postgres"):
            run.ready(name, partial(_store_answers, running, name))
        run.ready("consuming", self.consuming)
        run.ready("kafka", lambda: consumer_check(running.broker))
        await run.connect("kafka", settings.kafka_bootstrap_servers, running.start, transient=KAFKA_TRANSIENT)
        run.spawn("trackers", lambda: trackers_of(running), transient=TRANSIENT)
        fetching = partial(consumer_check, running.broker)
        stall = settings.consumer_stall_seconds
        run.spawn(
            "kafka-watch",
            lambda: watch_fetching(fetching, settings.kafka_bootstrap_servers, stall_after=stall),
        )

    async def consuming(self) -> str | None:
        running = self.running
        if running is None or not running.started:
            return "starting"
        paused = {name: status.unavailable for name, status in running.statuses.items() if status.unavailable}
        return "; ".join(f"{name} paused: {why}" for name, why in paused.items()) or None

    async def report(self) -> dict[str, Any]:
        return await self.running.report() if self.running is not None else {"projections": {}}

    async def refresh_metrics(self) -> None:
        await self.report()  # updates the gauges as it goes


@get("/status", operation_id="status", summary="What each projection is doing", tags=["health"])
async def status_route(projector: NamedDependency[ProjectorProcess]) -> dict[str, Any]:
    return await projector.report()


async def _store_answers(running: ProjectorService, name: str) -> str | None:
    return (await running.checks())[name]


async def trackers_of(projector_service: ProjectorService) -> None:
    """Wait on the position trackers, which ride out store outages themselves: one that ends is fatal."""
    trackers = projector_service.tracker_tasks
    done, _ = await asyncio.wait(trackers, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()  # raises the error it ended with
    raise RuntimeError(f"{', '.join(task.get_name() for task in done)} ended")
