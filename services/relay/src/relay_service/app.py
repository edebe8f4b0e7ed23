"""`create_app(settings, registry)`: the relay's process, wired in one place.

The publishing loop runs as a task for the app's lifespan; HTTP serves the kit's
`/health/live` (the loop is still running), `/health/ready` (PostgreSQL answers,
and this relay is a standby or a leader whose Kafka connection works),
`/metrics`, `/status`, the relay's own report, and `/schemas/<Type>.v<N>.json`,
the payload schemas each message's `ce_dataschema` points at.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from eventstore import EventRegistry, EventStoreError, PostgresEventStore, checkpoint_lag, connect, migrate
from fulfilment.schemas import schema_documents
from litestar import Litestar, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.health import postgres_check
from servicekit.observability import Observability
from servicekit.problems import ProblemTable
from servicekit.requests import ServiceRequest

from relay_service.metrics import RelayMetrics
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings
from relay_service.status import RelayReport, RelayStatus

__all__ = ["create_app"]


def create_app(
    settings: RelaySettings, registry: EventRegistry, *, span_exporter: SpanExporter | None = None
) -> Litestar:
    """Wire the relay: one pool, the store, the publishing task, the HTTP endpoints."""
    observability = Observability(settings, "relay", span_exporter=span_exporter, trace_postgres=False)
    status = RelayStatus()
    metrics = RelayMetrics(observability.registry)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await migrate(settings.database_url)
        pool = await connect(settings.database_url, min_size=1, max_size=4, application_name="relay")
        state["pool"] = pool
        store = PostgresEventStore(pool, registry)
        relay = Relay(settings, store, status, tracer=observability.tracer)
        task = asyncio.create_task(relay.run(), name="relay")
        state["task"] = task
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()
            await pool.close()
            observability.shutdown()

    async def publishing_loop_runs() -> str | None:
        # The loop survives every failure it knows; if it ended anyway the process is useless,
        # and the supervisor should restart it.
        task: asyncio.Task[None] | None = state.get("task")
        if task is not None and task.done():
            error = task.exception() if not task.cancelled() else None
            return f"the publishing loop ended: {error!r}"
        return None

    async def publishing() -> str | None:
        # A standby is healthy: it is ready to take over. A leader is healthy while Kafka takes its messages.
        if status.role == "standby" or (status.role == "leader" and status.kafka_connected):
            return None
        return f"{status.role}: {status.last_error or 'not connected to Kafka yet'}"

    async def report() -> RelayReport:
        lag_events: int | None = None
        lag_seconds: float | None = None
        pool: asyncpg.Pool | None = state.get("pool")
        if pool is not None:
            with contextlib.suppress(EventStoreError, TimeoutError):
                lag = await asyncio.wait_for(checkpoint_lag(pool, settings.relay_checkpoint), timeout=2.0)
                lag_events, lag_seconds = lag.events, lag.seconds
        return status.report(lag_events, lag_seconds)

    async def refresh_metrics() -> None:
        metrics.update(await report())

    @get("/status", operation_id="status", summary="What the relay is doing", tags=["health"])
    async def status_route() -> RelayReport:
        return await report()

    # The same text as the committed schemas/ folder (a test keeps the two equal), built once.
    schemas = {name: text.encode() for name, text in schema_documents().items()}

    @get(
        "/schemas/{name:str}",
        operation_id="schema",
        summary="The JSON Schema a message's ce_dataschema names",
        tags=["contract"],
    )
    async def schema_route(name: FromPath[str]) -> Response[bytes]:
        text = schemas.get(name)
        if text is None:
            raise NotFoundException(f"no schema {name!r}: names are <Type>.v<N>.json")
        return Response(text, media_type="application/schema+json")

    routes = observability.routes(
        ready={"postgres": postgres_check(lambda: state.get("pool")), "publishing": publishing},
        live={"publishing_loop": publishing_loop_runs},
        refresh_metrics=refresh_metrics,
    )
    return observability.instrument(
        Litestar(
            route_handlers=[status_route, schema_route, *routes],
            lifespan=[lifespan],
            request_class=ServiceRequest,
            exception_handlers={Exception: ProblemTable().handler},
            logging_config=None,
            openapi_config=None,
        )
    )
