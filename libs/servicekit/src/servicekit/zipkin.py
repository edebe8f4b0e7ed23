"""Spans to a Zipkin server (`OTEL_EXPORTER=zipkin`): OpenTelemetry's Zipkin JSON exporter, links kept.

Posts Zipkin v2 JSON to `OTEL_EXPORTER_ZIPKIN_ENDPOINT` (default
`http://localhost:9411/api/v2/spans`), with `OTEL_EXPORTER_ZIPKIN_TIMEOUT`. Zipkin has
no links, so each link becomes tags `links[i].traceId`/`links[i].spanId` (the relay's
publish span links to its events' traces). Tags without a value are left out: Zipkin
refuses a batch holding one with 400 (`docs/observability.md`).
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
