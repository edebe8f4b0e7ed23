"""OpenTelemetry tracing for HTTP, asyncpg and Kafka, the request's correlation id and access log line.

Spans are always made, exported or not, so every request has a trace id to log and to
put in its events' metadata; consumers continue it (`context_of`, `traceparent_of`) and
a publisher links to it (`link_to`). `RequestTelemetry`, one ASGI wrapper around the
whole app (`Observability.instrument`), makes the server span (named after the route
template), sets the correlation id and the answer's headers (`X-Correlation-ID`,
`nosniff`, those queued with `add_response_headers`) and writes the access line;
around the app it sees every answer, the router's 404 and 405 too. It replaces the
generic ASGI instrumentation, for its cost (`docs/benchmarks.md`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Status, StatusCode, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from servicekit.logs import (
    CORRELATION_HEADER,
    incoming_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from servicekit.metrics import HttpMetrics
from servicekit.settings import ServiceSettings, TracesSampler
from servicekit.spans import ServerSpans, TracerProvider

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

__all__ = [
    "RequestTelemetry",
    "add_response_headers",
    "context_of",
    "current_traceparent",
    "header_value",
    "instrument_asyncpg",
    "link_to",
    "sampler",
    "traceparent_of",
    "tracer_provider",
]

# Plain ASGI shapes: this middleware needs nothing of Litestar's richer scope types.
type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_propagator = TraceContextTextMapPropagator()
_TRACE_HEADERS = {b"traceparent", b"tracestate"}
_CORRELATION_HEADER = CORRELATION_HEADER.encode()
_NEW_TRACE = Context()


def sampler(name: TracesSampler, ratio: float = 1.0) -> Sampler:
    """The SDK's sampler that OTEL_TRACES_SAMPLER `name` stands for; `ratio` is OTEL_TRACES_SAMPLER_ARG."""
    match name:
        case "always_on":
            return ALWAYS_ON
        case "always_off":
            return ALWAYS_OFF
        case "traceidratio":
            return TraceIdRatioBased(ratio)
        case "parentbased_always_on":
            return DEFAULT_ON
        case "parentbased_always_off":
            return DEFAULT_OFF
        case "parentbased_traceidratio":
            return ParentBasedTraceIdRatio(ratio)


def tracer_provider(
    settings: ServiceSettings, service: str, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A tracer provider sampling and exporting where the settings say (or to `exporter`, for tests).

    `service` names the process in its spans unless OTEL_SERVICE_NAME says otherwise.
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name or service}),
        sampler=sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
    )
    if exporter is None and settings.otel_exporter != "none":
        if settings.otel_exporter == "console":
            exporter = ConsoleSpanExporter()
        elif settings.otel_exporter == "zipkin":
            # Endpoint and timeout from the standard OTEL_EXPORTER_ZIPKIN_* variables.
            from servicekit.zipkin import zipkin_exporter

            exporter = zipkin_exporter()
        else:
            # Endpoint, headers and timeouts come from the standard OTEL_EXPORTER_OTLP_* variables.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    elif exporter is not None:
        # An exporter handed in (tests, debugging) sees each span as soon as it ends.
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def instrument_asyncpg(provider: TracerProvider) -> None:
    """Trace asyncpg queries. asyncpg is patched process-wide, so the first provider stays."""
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to store in an event's metadata or a message header."""
    carrier: dict[str, Any] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent")
    return value if isinstance(value, str) else None


def context_of(traceparent: str | None) -> Context:
    """A context whose parent is the span `traceparent` names: start a consumer's span in it to
    continue the producer's trace. A missing or malformed value gives an empty context (a new trace)."""
    if not traceparent:
        return Context()
    return _propagator.extract({"traceparent": traceparent})


def link_to(traceparent: str | None) -> Link | None:
    """A span link to the span `traceparent` names: for a span that handles many events at once
    (a publishing batch), each with a trace of its own."""
    span_context = get_current_span(context_of(traceparent)).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def header_value(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The text of one Kafka header (the last one of that name), if present and valid UTF-8."""
    found: str | None = None
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                found = value.decode()
            except UnicodeDecodeError:
                found = None
    return found


def traceparent_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The event's trace context carried in a suite message's `ce_traceparent` header."""
    return header_value(headers, "ce_traceparent")


_NOSNIFF = (b"x-content-type-options", b"nosniff")
_QUEUED = "servicekit.response_headers"


def add_response_headers(request: ASGIConnection[Any, Any, Any, Any], *headers: tuple[bytes, bytes]) -> None:
    """Headers (lower-case names, encoded values) for the answer a handler returns as plain data.

    For a handler on the hot path: a Litestar `Response` made only to carry headers
    costs more than the rest of a read by id's own work (each header is normalised, and
    every one already there is decoded again to check for content-type and length).
    `RequestTelemetry` adds these as they are. Call it only once nothing can go wrong
    any more: an error answer would carry them too.
    """
    scope = cast("Scope", request.scope)  # Litestar's typed scope has no key of the kit's own
    queued: list[tuple[bytes, bytes]] | None = scope.get(_QUEUED)
    if queued is None:
        scope[_QUEUED] = list(headers)
    else:
        queued.extend(headers)


class RequestTelemetry:
    """Per HTTP request: a server span, the correlation id (set for the logs, echoed in the answer with
    `nosniff` and the headers the handler queued), one access line, the request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        provider: TracerProvider,
        service: str,
        access_log: bool = True,
        metrics: HttpMetrics | None = None,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._spans = ServerSpans(provider, f"{service}.http")
        self._access_log = access_log
        self._log = logging.getLogger(f"{service}.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = scope["headers"]
        incoming = incoming_correlation_id(headers)
        started = time.perf_counter()
        path = scope["path"]
        # Health probes come every few seconds from the orchestrator; their spans would be noise.
        if path.startswith("/health/"):
            await self._serve(scope, receive, send, incoming or str(uuid.uuid4()), started)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in _TRACE_HEADERS
        }
        method = scope["method"]
        # The route is known once Litestar's router has run, inside the app: a recorded span is
        # named after it at its end.
        span = self._spans.start(
            method,
            _propagator.extract(carrier) if carrier else _NEW_TRACE,
            {"http.request.method": method, "url.path": path},
        )
        # Made current by hand rather than with `start_as_current_span`: its two nested generator
        # context managers cost more than the unrecorded span itself (about 7 µs a request).
        token = otel_context.attach(set_span_in_context(span))
        try:
            # Without a caller's correlation id the trace id serves: it is unique, and it is what
            # the logs and the event metadata of this request carry anyway.
            correlation = incoming or format(span.get_span_context().trace_id, "032x")
            status = await self._serve(scope, receive, send, correlation, started)
            if span.is_recording():
                route = scope.get("path_template")
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
        except Exception as error:
            if span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, correlation: str, started: float
    ) -> int:
        """Run the app with the correlation id set, adding the answer's own headers; write the access
        line; return the status."""
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # One copy of the header list, with every header the kit adds.
                message["headers"] = [
                    *message.get("headers", ()),
                    *scope.get(_QUEUED, ()),
                    _NOSNIFF,
                    (_CORRELATION_HEADER, correlation.encode()),
                ]
            await send(message)

        token = set_correlation_id(correlation)
        try:
            await self._app(scope, receive, send_with_headers)
        finally:
            # Still inside the request's span, so the line carries its trace id.
            self._write_access_line(scope, status, started)
            if self._metrics is not None:
                # The route template, not the path: one series per endpoint, whatever ids are in the URL.
                route = scope.get("path_template") or "unmatched"
                self._metrics.observe(scope["method"], route, status, time.perf_counter() - started)
            reset_correlation_id(token)
        return status

    def _write_access_line(self, scope: Scope, status: int, started: float) -> None:
        if not self._access_log:
            return
        self._log.info(
            "%s %s %d",
            scope["method"],
            scope["path"],
            status,
            extra={
                "http_method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "subject": getattr(scope.get("user"), "subject", None),
            },
        )
