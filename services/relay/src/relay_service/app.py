"""`create_app(settings)`: the relay's process, declared to the kit's `Service`.

The publishing loop runs for the process's lifetime, supervised by the kit; HTTP
serves `/health/live`, `/health/ready` (PostgreSQL answers, and this relay is a
standby or a leader whose Kafka connection works), `/metrics`, `/status`, the
relay's own report, and `/schemas/<Type>.v<N>.json`, the payload schemas each
message's `ce_dataschema` points at.
"""

from __future__ import annotations

import asyncio
import contextlib

from eventstore import (
    TRANSIENT,
    EventRegistry,
    EventStoreError,
    PostgresEventStore,
    connect,
    migrate,
)
from eventstore.types import Pool
from fulfilment.registry import build_registry
from fulfilment.schemas import schema_documents
from litestar import Litestar, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from opentelemetry.sdk.trace.export import SpanExporter
from servicekit.health import postgres_check
from servicekit.service import Service, Startup

from relay_service.metrics import RelayMetrics
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings
from relay_service.status import RelayReport, RelayStatus, published_lag

__all__ = ["create_app"]


def create_app(
    settings: RelaySettings,
    *,
    registry: EventRegistry | None = None,
    span_exporter: SpanExporter | None = None,
) -> Litestar:
    """The relay: one pool, the store, the publishing loop, the HTTP endpoints."""
    service = Service(settings, "relay", span_exporter=span_exporter, trace_postgres=False)
    events = registry or build_registry()
    status = RelayStatus()
    metrics = RelayMetrics(service.registry)
    pools: list[Pool] = []

    async def start(run: Startup) -> None:
        await run.connect(
            "postgres", settings.database_url, lambda: migrate(settings.database_url), transient=TRANSIENT
        )
        pool = await run.connect(
            "postgres",
            settings.database_url,
            lambda: connect(settings.database_url, min_size=1, max_size=4, application_name="relay"),
            close=lambda pool: pool.close(),
            transient=TRANSIENT,
        )
        pools.append(pool)
        store = PostgresEventStore(pool, events)
        run.on_stop(store.close)
        run.ready("postgres", postgres_check(lambda: pool))
        run.ready("publishing", publishing)
        relay = Relay(settings, store, status, tracer=service.tracer)
        run.spawn("publishing", relay.run, transient=TRANSIENT)

    async def publishing() -> str | None:
        # A standby is healthy: it is ready to take over. A leader is healthy while Kafka takes its messages.
        if status.role == "standby" or (status.role == "leader" and status.kafka_connected):
            return None
        return f"{status.role}: {status.last_error or 'not connected to Kafka yet'}"

    async def report() -> RelayReport:
        lag_events: int | None = None
        lag_seconds: float | None = None
        if pools:
            with contextlib.suppress(EventStoreError, TimeoutError):
                lag = await asyncio.wait_for(published_lag(pools[0], settings.relay_checkpoint), timeout=2.0)
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

    return service.app([status_route, schema_route], start=start, refresh_metrics=refresh_metrics)
