"""OpenTelemetry tracing for HTTP (the ASGI middleware) and asyncpg, and the traceparent for events.

Spans are always made, even when nothing exports them, so that every request has
a trace id to log and to write into the metadata of the events it appends: a
consumer downstream continues the same trace from the event's `traceparent`.
"""

from __future__ import annotations

from typing import Any

from litestar.middleware.base import DefineMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from command_service.settings import CommandSettings

__all__ = ["current_traceparent", "http_tracing_middleware", "instrument_asyncpg", "tracer_provider"]

_propagator = TraceContextTextMapPropagator()


def tracer_provider(settings: CommandSettings, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider exporting where the settings say (or to `exporter`, for tests)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
    )
    if exporter is None and settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    elif exporter is None and settings.otel_exporter == "otlp":
        # Endpoint, headers and timeouts come from the standard OTEL_EXPORTER_OTLP_* variables.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def http_tracing_middleware(provider: TracerProvider) -> DefineMiddleware:
    """The ASGI tracing middleware: a server span per request, continuing an incoming traceparent."""
    config = OpenTelemetryConfig(
        tracer_provider=provider,
        exclude=["^/health/"],
        # Spans for every ASGI send/receive cost more than they tell.
        exclude_spans=["receive", "send"],
    )
    return config.middleware


def instrument_asyncpg(provider: TracerProvider) -> None:
    """Trace asyncpg queries. asyncpg is patched process-wide, so the first provider stays."""
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to store in an event's metadata."""
    carrier: dict[str, Any] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent")
    return value if isinstance(value, str) else None
