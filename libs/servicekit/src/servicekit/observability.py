"""A service's traces, metrics and health endpoints, set up in one object.

    observability = Observability(settings, "relay")
    app = Litestar(
        route_handlers=[*own_routes, *observability.routes(ready={"postgres": ...})],
        middleware=[observability.middleware()],
        before_send=[observability.before_send],
        request_class=ServiceRequest,  # servicekit.requests
        exception_handlers={Exception: problems.handler},  # a servicekit.problems.ProblemTable
        ...
    )

It owns the tracer provider (sampling and exporting where the settings say), the
app's Prometheus registry with the HTTP request metrics, the request middleware
(server span, correlation id, JSON access line) and the `before_send` hook that
echoes the correlation id. `shutdown()` flushes spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from litestar.handlers import HTTPRouteHandler
from litestar.middleware.base import DefineMiddleware
from litestar.types import BeforeMessageSendHookHandler
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer

from servicekit.health import Check, health_routes
from servicekit.metrics import HttpMetrics, Refresh, metrics_route, new_registry
from servicekit.settings import ServiceSettings
from servicekit.telemetry import (
    RequestTelemetry,
    add_correlation_header,
    instrument_asyncpg,
    tracer_provider,
)

__all__ = ["Observability"]


class Observability:
    """Traces, metrics and health of one service process."""

    def __init__(
        self,
        settings: ServiceSettings,
        service: str,
        *,
        span_exporter: SpanExporter | None = None,
        trace_postgres: bool = True,
    ) -> None:
        self.service = service
        self.provider = tracer_provider(settings, service, span_exporter)
        self.tracer: Tracer = self.provider.get_tracer(service)
        self.registry = new_registry()
        self.http_metrics = HttpMetrics(self.registry)
        self._access_log = settings.access_log
        if trace_postgres:
            instrument_asyncpg(self.provider)

    def middleware(self) -> DefineMiddleware:
        """The request middleware: one server span, the correlation id, one access line, metrics."""
        return DefineMiddleware(
            RequestTelemetry,  # type: ignore[arg-type]  # plain ASGI shapes, not Litestar's scope types
            provider=self.provider,
            service=self.service,
            access_log=self._access_log,
            metrics=self.http_metrics,
        )

    def routes(
        self,
        *,
        ready: Mapping[str, Check],
        live: Mapping[str, Check] | None = None,
        refresh_metrics: Refresh | None = None,
    ) -> list[HTTPRouteHandler]:
        """`/health/live`, `/health/ready` and `/metrics`."""
        return [*health_routes(ready=ready, live=live), metrics_route(self.registry, refresh_metrics)]

    @property
    def before_send(self) -> BeforeMessageSendHookHandler:
        """The `before_send` hook that puts X-Correlation-ID (and nosniff) on every answer: without it,
        answers carry no correlation id."""
        return cast("BeforeMessageSendHookHandler", add_correlation_header)

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.provider.shutdown()
