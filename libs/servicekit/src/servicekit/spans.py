"""The server span of an HTTP request: sampled as the SDK samples, recorded for less.

`ServerSpans` uses the provider's own sampler and id generator: an unrecorded span is
a `NonRecordingSpan`, a recorded one a `RequestSpan` (plain containers, one event
loop) that hands the span processors one SDK `ReadableSpan` at its end, attributes
bounded by the provider's `SpanLimits`; with no processor (`OTEL_EXPORTER=none`)
nothing is built. Processors see it in `on_end` only. Other spans of a request are
ordinary SDK spans, its children. Why (the SDK span's cost): `docs/benchmarks.md`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AnyValue, Attributes

__all__ = ["RequestSpan", "ServerSpans", "TracerProvider"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class SpanProcessors(SynchronousMultiSpanProcessor):
    """The provider's span processors, knowing whether there are any."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
        self.any = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.any = True


class TracerProvider(SdkTracerProvider):
    """The SDK's tracer provider, keeping hold of its span processors and limits for `ServerSpans`."""

    def __init__(self, *, sampler: Sampler, resource: Resource) -> None:
        self.span_processors = SpanProcessors()
        self.span_limits = SpanLimits()
        super().__init__(
            sampler=sampler,
            resource=resource,
            active_span_processor=self.span_processors,
            span_limits=self.span_limits,
        )


class ServerSpans:
    """Starts the server spans of one instrumentation scope (`"<service>.http"`)."""

    def __init__(self, provider: TracerProvider, scope: str) -> None:
        self._provider = provider
        self._processors = provider.span_processors
        self.limits = provider.span_limits
        self.scope = InstrumentationScope(scope)
        # OTEL_SDK_DISABLED: the SDK hands out no-op tracers; nothing is recorded here either.
        self._enabled = not isinstance(provider.get_tracer(scope), trace_api.NoOpTracer)

    def start(self, name: str, parent_context: Context, attributes: dict[str, AnyValue]) -> trace_api.Span:
        """A server span named `name`, child of the span in `parent_context` if it holds a valid one,
        recorded if the sampler says so and a processor would receive it."""
        provider = self._provider
        parent = trace_api.get_current_span(parent_context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else provider.id_generator.generate_trace_id()
        sampling = provider.sampler.should_sample(parent_context, trace_id, name, SpanKind.SERVER, attributes)
        context = SpanContext(
            trace_id,
            provider.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED if sampling.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED,
            trace_state=sampling.trace_state,
        )
        if sampling.decision is Decision.DROP or not (self._processors.any and self._enabled):
            return NonRecordingSpan(context)
        own_parent = parent if parent.is_valid else None
        return RequestSpan(self, name, context, own_parent, dict(sampling.attributes))

    def finish(self, span: RequestSpan, end_time: int) -> None:
        """Hand the ended `span` to the processors, bounded and checked as the SDK's own spans are."""
        limits = self.limits
        events = [
            Event(event.name, self._bounded(event.attributes, limits.max_event_attributes), event.timestamp)
            for event in span.events[: limits.max_events]
        ]
        links = [
            Link(link.context, self._bounded(link.attributes, limits.max_link_attributes))
            for link in span.links[: limits.max_links]
        ]
        self._processors.on_end(
            ReadableSpan(
                name=span.name,
                context=span.get_span_context(),
                parent=span.parent,
                resource=self._provider.resource,
                attributes=BoundedAttributes(
                    limits.max_span_attributes,
                    span.attributes,
                    immutable=True,
                    max_value_len=limits.max_span_attribute_length,
                ),
                events=events,
                links=links,
                kind=SpanKind.SERVER,
                status=span.status,
                start_time=span.start_time,
                end_time=end_time,
                instrumentation_scope=self.scope,
            )
        )

    def _bounded(self, attributes: Attributes, most: int | None) -> BoundedAttributes:
        return BoundedAttributes(
            most, attributes, immutable=True, max_value_len=self.limits.max_attribute_length
        )


class RequestSpan(trace_api.Span):
    """A recorded server span: what is set on it is kept as given until its end."""

    def __init__(
        self,
        spans: ServerSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, AnyValue],
    ) -> None:
        self._spans = spans
        self._context = context
        self._ended = False
        self.name = name
        self.parent = parent
        self.attributes = attributes
        self.events: list[Event] = []
        self.links: list[Link] = []
        self.status = _UNSET
        self.start_time = time.time_ns()

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: AnyValue) -> None:
        if not self._ended:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AnyValue]) -> None:
        if not self._ended:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        if not self._ended:
            # A copy: the caller may change its mapping afterwards (`finish` bounds this one).
            copied = dict(attributes) if attributes else None
            self.events.append(Event(name, copied, timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if not self._ended and context.is_valid:
            self.links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: OK is final, and UNSET changes nothing.
        if self._ended or self.status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self.status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind, module = type(exception), type(exception).__module__
        name = kind.__qualname__ if module in ("", "builtins") else f"{module}.{kind.__qualname__}"
        recorded: dict[str, AnyValue] = {
            "exception.type": name,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        recorded.update(attributes or {})
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._spans.finish(self, end_time if end_time is not None else time.time_ns())
