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
from functools import cache

from eventstore import TRANSIENT, EventRegistry, EventStoreError, PostgresEventStore, connect, migrate
from eventstore.types import Pool
from fulfilment.registry import build_registry
from fulfilment.schemas import schema_documents
from litestar import Litestar, Response, get
from litestar.di import NamedDependency
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
    service = Service(settings, "relay", span_exporter=span_exporter)
    relay = RelayProcess(settings, registry or build_registry(), service)
    return service.app(
        [status_route, schema_route],
        start=relay.start,
        provides={"relay": relay},
        refresh_metrics=relay.refresh_metrics,
    )


class RelayProcess:
    """What the relay's start-up, routes and metrics share: its status and, once open, its pool."""

    def __init__(self, settings: RelaySettings, registry: EventRegistry, service: Service) -> None:
        self.settings = settings
        self.registry = registry
        self.tracer = service.tracer
        self.status = RelayStatus()
        self.metrics = RelayMetrics(service.registry)
        self.pool: Pool | None = None

    async def start(self, run: Startup) -> None:
        url = self.settings.database_url
        await run.connect("postgres", url, lambda: migrate(url), transient=TRANSIENT)
        self.pool = pool = await run.connect(
            "postgres",
            url,
            lambda: connect(url, min_size=1, max_size=4, application_name="relay"),
            close=lambda pool: pool.close(),
            transient=TRANSIENT,
        )
        store = PostgresEventStore(pool, self.registry)
        run.on_stop(store.close)
        run.ready("postgres", postgres_check(lambda: pool))
        run.ready("publishing", self.publishing)
        relay = Relay(self.settings, store, self.status, tracer=self.tracer)
        run.spawn("publishing", relay.run, transient=TRANSIENT)

    async def publishing(self) -> str | None:
        """A standby is healthy (ready to take over); a leader is while Kafka takes its messages."""
        status = self.status
        if status.role == "standby" or (status.role == "leader" and status.kafka_connected):
            return None
        return f"{status.role}: {status.last_error or 'not connected to Kafka yet'}"

    async def report(self) -> RelayReport:
        lag_events: int | None = None
        lag_seconds: float | None = None
        if self.pool is not None:
            with contextlib.suppress(EventStoreError, TimeoutError):
                checkpoint = self.settings.relay_checkpoint
                lag = await asyncio.wait_for(published_lag(self.pool, checkpoint), timeout=2.0)
                lag_events, lag_seconds = lag.events, lag.seconds
        return self.status.report(lag_events, lag_seconds)

    async def refresh_metrics(self) -> None:
        self.metrics.update(await self.report())


@get("/status", operation_id="status", summary="What the relay is doing", tags=["health"])
async def status_route(relay: NamedDependency[RelayProcess]) -> RelayReport:
    return await relay.report()


@cache
def _schemas() -> dict[str, bytes]:
    # The same text as the committed schemas/ folder (a test keeps the two equal), built once.
    return {name: text.encode() for name, text in schema_documents().items()}


@get(
    "/schemas/{name:str}",
    operation_id="schema",
    summary="The JSON Schema a message's ce_dataschema names",
    tags=["contract"],
)
async def schema_route(name: FromPath[str]) -> Response[bytes]:
    text = _schemas().get(name)
    if text is None:
        raise NotFoundException(f"no schema {name!r}: names are <Type>.v<N>.json")
    return Response(text, media_type="application/schema+json")
