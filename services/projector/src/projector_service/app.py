"""`create_app(settings, registry)`: the projector's process, wired in one place.

The consumers and position trackers run for the app's lifespan. HTTP serves the
kit's `/health/live` (the trackers still run), `/health/ready` (Redis, the search
engine and PostgreSQL answer, and no projection is paused on a store outage),
`/metrics`, and `/status`, the projector's own report per projection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from eventstore import EventRegistry
from litestar import Litestar, get
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.observability import Observability
from servicekit.problems import ProblemTable

from projector_service.bootstrap import Projector
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings

__all__ = ["create_app"]


def create_app(
    settings: ProjectorSettings, registry: EventRegistry, *, span_exporter: SpanExporter | None = None
) -> Litestar:
    """Wire the projector: connections, one consumer group per projection, the HTTP endpoints."""
    observability = Observability(settings, "projector", span_exporter=span_exporter, trace_postgres=False)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        projector = await Projector.open(settings, registry)
        service = ProjectorService(projector, registry=observability.registry, tracer=observability.tracer)
        state["service"] = service
        # Started in the background: while a store is down at start-up, health already answers and says so.
        starting = asyncio.create_task(service.start(), name="start")
        state["starting"] = starting
        try:
            yield
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await service.stop()
            await projector.close()
            observability.shutdown()

    def running() -> ProjectorService | None:
        service: ProjectorService | None = state.get("service")
        return service

    async def trackers_run() -> str | None:
        service = running()
        starting: asyncio.Task[None] | None = state.get("starting")
        if starting is not None and starting.done() and not starting.cancelled() and starting.exception():
            return f"start-up failed: {starting.exception()!r}"
        return service.dead() if service is not None else None

    def store_check(name: str) -> Any:
        async def check() -> str | None:
            service = running()
            if service is None:
                return "not connected yet"
            return (await service.checks())[name]

        return check

    async def consuming() -> str | None:
        service = running()
        if service is None or not service.started:
            return "starting"
        paused = {name: status.unavailable for name, status in service.statuses.items() if status.unavailable}
        if paused:
            return "; ".join(f"{name} paused: {why}" for name, why in paused.items())
        return None

    async def report() -> dict[str, Any]:
        service = running()
        return await service.report() if service is not None else {"projections": {}}

    async def refresh_metrics() -> None:
        await report()  # updates the gauges as it goes

    @get("/status", operation_id="status", summary="What each projection is doing", tags=["health"])
    async def status_route() -> dict[str, Any]:
        return await report()

    routes = observability.routes(
        ready={
            "redis": store_check("redis"),
            "search": store_check("search"),
            "postgres": store_check("postgres"),
            "consuming": consuming,
        },
        live={"trackers": trackers_run},
        refresh_metrics=refresh_metrics,
    )
    return observability.instrument(
        Litestar(
            route_handlers=[status_route, *routes],
            lifespan=[lifespan],
            exception_handlers={Exception: ProblemTable().handler},
            logging_config=None,
            openapi_config=None,
        )
    )
