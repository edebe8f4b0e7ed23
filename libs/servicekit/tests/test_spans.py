"""The request's server span (`servicekit.spans`): what an exporter receives, and when nothing is built."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode
from servicekit.observability import Observability
from servicekit.settings import ServiceSettings
from servicekit.spans import RequestSpan, ServerSpans, TracerProvider
from servicekit.telemetry import current_traceparent

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _app(observability: Observability) -> Litestar:
    @get("/items/{item:int}")
    async def item(item: FromPath[int]) -> dict[str, str | None]:
        # What a service's own handler may do: annotate the request's span, open a child span.
        server = trace.get_current_span()
        server.set_attribute("item.id", item)
        server.add_event("looked up", {"cache": "miss"})
        with observability.tracer.start_as_current_span("load item"):
            pass
        if item == 0:
            raise RuntimeError("item 0 is cursed")
        return {"traceparent": current_traceparent()}

    return observability.instrument(Litestar(route_handlers=[item]))


async def _get(app: Litestar, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        return await client.get(path, headers=headers)


async def test_a_recorded_request_span_reaches_the_exporter_whole_with_its_children() -> None:
    exporter = InMemorySpanExporter()
    observability = Observability(ServiceSettings(access_log=False), "demo", span_exporter=exporter)
    answer = await _get(_app(observability), "/items/7", traceparent=TRACEPARENT)

    assert answer.status_code == 200
    child, server = exporter.get_finished_spans()
    assert (server.name, server.kind, child.name) == ("GET /items/{item}", SpanKind.SERVER, "load item")
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "demo.http"
    assert server.resource.attributes["service.name"] == "demo"
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "item.id": 7,
        "http.route": "/items/{item}",
        "http.response.status_code": 200,
    }
    assert [(event.name, dict(event.attributes or {})) for event in server.events] == [
        ("looked up", {"cache": "miss"})
    ]
    # It continues the caller's trace, and is the parent of what the handler opens.
    assert server.parent is not None
    assert (format(server.context.trace_id, "032x"), format(server.parent.span_id, "016x")) == (
        CALLER_TRACE,
        CALLER_SPAN,
    )
    assert child.parent is not None
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id
    assert server.start_time is not None
    assert server.end_time is not None
    assert 0 < server.end_time - server.start_time < 10**10
    assert server.status.status_code is StatusCode.UNSET
    # What the handler propagated downstream names this span, sampled.
    assert answer.json()["traceparent"] == f"00-{CALLER_TRACE}-{format(server.context.span_id, '016x')}-01"
    # The OTLP exporter's encoder takes it as it takes the SDK's spans.
    encoded = encode_spans([server, child]).SerializeToString()
    assert b"/items/{item}" in encoded
    assert b"looked up" in encoded
    observability.shutdown()


async def test_a_failed_request_span_has_error_status() -> None:
    exporter = InMemorySpanExporter()
    observability = Observability(ServiceSettings(access_log=False), "demo", span_exporter=exporter)
    answer = await _get(_app(observability), "/items/0")

    assert answer.status_code == 500
    server = next(span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 500
    assert server.parent is None  # no caller's trace: a new one
    observability.shutdown()


async def test_without_a_processor_nothing_is_built_yet_the_sampling_decision_travels() -> None:
    # OTEL_EXPORTER=none: no processor, so the span is not recorded, but downstream services that do
    # export still learn that this trace is sampled.
    observability = Observability(ServiceSettings(access_log=False), "demo")
    spans = ServerSpans(observability.provider, "demo.http")
    span = spans.start("GET", trace.set_span_in_context(NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)), {})
    assert isinstance(span, NonRecordingSpan)
    assert span.get_span_context().trace_flags.sampled
    answer = await _get(_app(observability), "/items/3")
    assert answer.json()["traceparent"].endswith("-01")
    observability.shutdown()


async def test_an_unsampled_request_is_not_recorded_and_says_so_downstream() -> None:
    exporter = InMemorySpanExporter()
    settings = ServiceSettings(access_log=False, otel_traces_sampler="always_off")
    observability = Observability(settings, "demo", span_exporter=exporter)
    answer = await _get(_app(observability), "/items/3")
    # Only the handler's own span would be the SDK's: unsampled as well.
    assert exporter.get_finished_spans() == ()
    assert answer.json()["traceparent"].endswith("-00")
    observability.shutdown()


def _recording() -> tuple[RequestSpan, InMemorySpanExporter]:
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.create({"service.name": "demo"}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = ServerSpans(provider, "demo.http").start("GET", trace.set_span_in_context(trace.INVALID_SPAN), {})
    assert isinstance(span, RequestSpan)
    return span, exporter


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def test_attributes_are_bounded_and_checked_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "5")
    span, exporter = _recording()
    span.set_attributes({"a": "abcdefgh", "b": [1, 2], "c": 3})
    span.set_attribute("d", True)  # the fourth: the oldest goes, as in the SDK
    span.end()
    recorded = _only(exporter)
    assert dict(recorded.attributes or {}) == {"b": (1, 2), "c": 3, "d": True}
    assert recorded.dropped_attributes == 1


def test_an_exception_is_an_event_and_ok_is_final() -> None:
    span, exporter = _recording()
    try:
        raise ValueError("bad item")
    except ValueError as error:
        span.record_exception(error)
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "too late")  # OK stays, as in the SDK
    span.set_status(StatusCode.UNSET)
    span.end()
    recorded = _only(exporter)
    [event] = recorded.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad item"
    assert "raise ValueError" in str(event.attributes["exception.stacktrace"])
    assert recorded.status.status_code is StatusCode.OK


def test_an_ended_span_changes_no_more_and_is_exported_once() -> None:
    span, exporter = _recording()
    span.end()
    span.set_attribute("late", 1)
    span.update_name("renamed")
    span.add_event("late")
    span.set_status(StatusCode.ERROR)
    span.end()
    recorded = _only(exporter)
    assert (recorded.name, recorded.events, recorded.status.status_code) == ("GET", (), StatusCode.UNSET)
    assert "late" not in (recorded.attributes or {})
    assert not span.is_recording()
