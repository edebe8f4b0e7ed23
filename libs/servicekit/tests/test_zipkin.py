"""Spans to Zipkin (`servicekit.zipkin`, `OTEL_EXPORTER=zipkin`): what the exporter posts."""

from __future__ import annotations

import json

import msgspec
import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.exporter.zipkin.node_endpoint import NodeEndpoint
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link, SpanContext, SpanKind
from servicekit.settings import ServiceSettings, from_env
from servicekit.spans import ServerSpans, TracerProvider
from servicekit.telemetry import tracer_provider
from servicekit.zipkin import LinkTagsEncoder, zipkin_exporter

LINKED = [
    SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True),
    SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True),
]


def _encoded(*, links: list[Link] | None = None, server: bool = False) -> dict[str, object]:
    """One span, as the kit's encoder puts it in the JSON body posted to Zipkin."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.create({"service.name": "relay"}))
    provider.add_span_processor(BatchSpanProcessor(memory))
    if server:
        ServerSpans(provider, "relay.http").start("GET", Context(), {}).end()
    else:
        # No version, as every tracer of the suite's services.
        with provider.get_tracer("relay").start_as_current_span(
            "relay publish", kind=SpanKind.PRODUCER, links=links
        ):
            pass
    provider.force_flush()
    (span,) = memory.get_finished_spans()
    body = LinkTagsEncoder().serialize([span], NodeEndpoint())
    (encoded,) = json.loads(body)
    return dict(encoded)


def test_each_link_is_written_as_trace_and_span_id_tags() -> None:
    encoded = _encoded(links=[Link(context) for context in LINKED])
    tags = encoded["tags"]
    assert isinstance(tags, dict)
    assert tags["links[0].traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tags["links[0].spanId"] == "00f067aa0ba902b7"
    assert tags["links[1].traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert tags["links[1].spanId"] == "b7ad6b7169203331"
    assert encoded["kind"] == "PRODUCER"


@pytest.mark.parametrize("server", [False, True], ids=["sdk span", "server span"])
def test_no_tag_is_posted_without_a_value(server: bool) -> None:
    # Zipkin answers 400 to a batch holding a null tag, and loses all of its spans: the plain
    # encoder writes the scope's missing version as null.
    encoded = _encoded(server=server)
    tags = encoded["tags"]
    assert isinstance(tags, dict)
    assert None not in tags.values()
    assert tags["otel.library.name"] in {"relay", "relay.http"}


def test_the_exporter_posts_to_the_standard_zipkin_endpoint_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://127.0.0.1:59411/api/v2/spans")
    exporter = zipkin_exporter()
    assert exporter.endpoint == "http://127.0.0.1:59411/api/v2/spans"
    assert isinstance(exporter.encoder, LinkTagsEncoder)


def test_otel_exporter_zipkin_gives_the_provider_the_kits_zipkin_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://127.0.0.1:59411/api/v2/spans")
    settings = msgspec.convert({"otel_exporter": "zipkin"}, ServiceSettings)
    provider = tracer_provider(settings, "relay")
    (processor,) = provider.span_processors._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    exporter = processor.span_exporter
    assert isinstance(exporter, ZipkinExporter)
    assert isinstance(exporter.encoder, LinkTagsEncoder)
    provider.shutdown()


def test_otel_exporter_zipkin_is_read_from_the_environment() -> None:
    assert from_env(ServiceSettings, {"OTEL_EXPORTER": "zipkin"}).otel_exporter == "zipkin"
