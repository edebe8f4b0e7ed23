"""A service's traces, metrics and health endpoints, set up in one object.

It owns the tracer provider (sampling and exporting as the settings say), the app's
Prometheus registry with the HTTP request metrics, and the request telemetry around
the app (server span, correlation id, JSON access line). ``Service`` builds one per
app (``observability.instrument(app)``, ``observability.routes(ready=...)``);
``shutdown()`` flushes spans.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer

from servicekit.health import Check, health_routes
from servicekit.metrics import HttpMetrics, Refresh, metrics_route, new_registry
from servicekit.settings import ServiceSettings
from servicekit.telemetry import RequestTelemetry, instrument_asyncpg, tracer_provider

__all__ = ["Observability"]


class Observability:
    """Traces, metrics and health of one service process."""

    def __init__(
        self,
        settings: ServiceSettings,
        service: str,
        *,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.service = service
        self.provider = tracer_provider(settings, service, span_exporter)
        self.tracer: Tracer = self.provider.get_tracer(service)
        self.registry = new_registry()
        self.http_metrics = HttpMetrics(self.registry)
        self._access_log = settings.access_log
        if settings.otel_trace_sql:
            instrument_asyncpg(self.provider)

    def instrument(self, app: Litestar) -> Litestar:
        """Wrap the whole of `app`'s request handling (after its own routing and error handling are
        built) in the request telemetry: one server span, the correlation id, `nosniff` and the headers
        handlers queue, one access line, metrics. Every answer passes through it, the router's 404 and
        405 too. `app.state.observability` is this object (to flush its spans, say)."""
        telemetry = RequestTelemetry(
            app.asgi_handler,  # type: ignore[arg-type]  # plain ASGI shapes, not Litestar's scope types
            provider=self.provider,
            service=self.service,
            access_log=self._access_log,
            metrics=self.http_metrics,
        )
        app.asgi_handler = telemetry  # type: ignore[assignment]
        app.state.observability = self
        return app

    def routes(
        self,
        *,
        ready: Mapping[str, Check],
        live: Mapping[str, Check] | None = None,
        refresh_metrics: Refresh | None = None,
    ) -> list[HTTPRouteHandler]:
        """`/health/live`, `/health/ready` and `/metrics`."""
        return [*health_routes(ready=ready, live=live), metrics_route(self.registry, refresh_metrics)]

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.provider.shutdown()
