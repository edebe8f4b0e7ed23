"""Structured JSON logs: one object per line, with the trace and correlation ids of the request.

The correlation id lives in a context variable set by `telemetry.RequestTelemetry`,
so every log line written while a request is handled carries it, whichever
logger wrote it; the trace and span ids come from the active OpenTelemetry span.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

import msgspec
from opentelemetry import trace

__all__ = [
    "CORRELATION_HEADER",
    "JsonFormatter",
    "configure_logging",
    "correlation_id",
    "incoming_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
]

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_HEADER_BYTES = CORRELATION_HEADER.encode()
_MAX_CORRELATION_ID = 128

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_encoder = msgspec.json.Encoder()
# LogRecord attributes that are not "extra" fields a caller passed.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def correlation_id() -> str | None:
    """The correlation id of the request being handled, if any."""
    return _correlation_id.get()


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if (correlation := _correlation_id.get()) is not None:
            entry["correlation_id"] = correlation
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def set_correlation_id(value: str) -> Token[str | None]:
    """Make `value` the correlation id of everything logged in this context until `reset_correlation_id`."""
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _correlation_id.reset(token)


def incoming_correlation_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The caller's `X-Correlation-ID`, when it sent a sane one (so a chain of services shares it)."""
    for name, value in headers:
        if name == _CORRELATION_HEADER_BYTES:
            text: str = value.decode("latin-1").strip()
            if 0 < len(text) <= _MAX_CORRELATION_ID and text.isprintable():
                return text
    return None
