"""Spans to a Zipkin server (`OTEL_EXPORTER=zipkin`): OpenTelemetry's Zipkin JSON exporter, links kept.

The exporter posts Zipkin's v2 JSON to the standard `OTEL_EXPORTER_ZIPKIN_ENDPOINT`
(default `http://localhost:9411/api/v2/spans`), with `OTEL_EXPORTER_ZIPKIN_TIMEOUT`.

Zipkin's span model has parents but no links, and the exporter drops an
OpenTelemetry span's links without a trace. The suite needs them: the relay's
`relay publish` span is the root of a trace of its own, linked to the traces of
the events it published (one span per confirmed batch, many requests). So each
link becomes two tags, `links[i].traceId` and `links[i].spanId`, the names
Micrometer Tracing's Brave bridge gives them: Zipkin shows them with the span,
and a tag search (`annotationQuery=links[0].traceId=<id>`) finds the publish of
a request's events.

A tag without a value is left out: the exporter writes the instrumentation
scope's version even when the scope has none (`"otel.library.version": null`,
so for every span of `tracer_provider(...).get_tracer(name)` and every server
span), and Zipkin answers such a batch with 400, dropping all of its spans.
"""

from __future__ import annotations

from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder
from opentelemetry.trace import Span

__all__ = ["LinkTagsEncoder", "zipkin_exporter"]


class LinkTagsEncoder(JsonV2Encoder):
    """Zipkin v2 JSON, with each span link as `links[i].traceId` / `links[i].spanId` tags, and no
    tag without a value."""

    def _extract_tags_from_span(self, span: Span) -> dict[str, str]:
        tags = {
            key: value for key, value in super()._extract_tags_from_span(span).items() if value is not None
        }
        # The SDK's ReadableSpan has `links`; the API's Span type the encoder is declared with does not.
        for index, link in enumerate(getattr(span, "links", ()) or ()):
            context = link.context
            tags[f"links[{index}].traceId"] = self._encode_trace_id(context.trace_id)
            tags[f"links[{index}].spanId"] = self._encode_span_id(context.span_id)
        return tags


def zipkin_exporter(endpoint: str | None = None) -> ZipkinExporter:
    """A Zipkin exporter posting to `endpoint`, else to OTEL_EXPORTER_ZIPKIN_ENDPOINT; links kept as tags."""
    exporter = ZipkinExporter(endpoint=endpoint)
    # The exporter picks its encoder in __init__ and offers no way to pass one; mypy infers the
    # attribute's type from its first branch (the v1 encoder).
    exporter.encoder = LinkTagsEncoder()  # type: ignore[assignment]
    return exporter
