"""Logs and traces: JSON log lines with trace and correlation ids, server spans continuing the caller's."""

from __future__ import annotations

import io
import json
import logging

import httpx
from command_service.app import create_app
from command_service.settings import CommandSettings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from servicekit.logs import JsonFormatter
from testkit.harness import TokenFactory, lifespan_of

from services.command.tests.support import ORDER_BODY, command_headers


def test_a_log_line_is_json_with_the_trace_id_and_extras() -> None:
    provider = TracerProvider()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False

    with provider.get_tracer("test").start_as_current_span("request") as span:
        logger.warning("order %s placed", "o-1", extra={"order_id": "o-1"})
    line = json.loads(stream.getvalue())

    assert line["message"] == "order o-1 placed"
    assert line["level"] == "WARNING"
    assert line["order_id"] == "o-1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


async def test_an_access_log_line_carries_the_trace_and_correlation_ids(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("command.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        extra = {"X-Correlation-ID": "c-9", "traceparent": f"00-{'ab' * 16}-{'1' * 16}-01"}
        await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens("alice"), **extra))
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)

    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["status"], line["path"], line["subject"]) == (201, "/orders", "alice")
    assert (line["correlation_id"], line["trace_id"]) == ("c-9", "ab" * 16)


async def test_a_command_is_traced_as_a_server_span_continuing_the_callers_trace(
    settings: CommandSettings, tokens: TokenFactory
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(settings, span_exporter=exporter)
    caller_trace, caller_span = "cd" * 16, "2" * 16
    extra = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
    async with (
        lifespan_of(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command.test") as http,
    ):
        response = await http.post(
            "/orders", json=ORDER_BODY, headers=command_headers(tokens("alice"), **extra)
        )
        await http.get("/health/live")

    [span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert response.status_code == 201
    assert span.name == "POST /orders"
    assert span.attributes is not None
    assert (span.attributes["http.route"], span.attributes["http.response.status_code"]) == ("/orders", 201)
    assert span.parent is not None
    assert (format(span.context.trace_id, "032x"), format(span.parent.span_id, "016x")) == (
        caller_trace,
        caller_span,
    )
