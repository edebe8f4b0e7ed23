"""Structured JSON logs: one object per line, with the trace and correlation ids of the request.

The correlation id lives in a context variable set by `RequestContextMiddleware`,
so every log line written while a request is handled carries it, whichever
logger wrote it; the trace and span ids come from the active OpenTelemetry span.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import msgspec
from opentelemetry import trace

__all__ = [
    "CORRELATION_HEADER",
    "JsonFormatter",
    "RequestContextMiddleware",
    "configure_logging",
    "correlation_id",
]

CORRELATION_HEADER = "x-correlation-id"
_MAX_CORRELATION_ID = 128

# Plain ASGI shapes: this middleware needs nothing of Litestar's richer scope types.
type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


class RequestContextMiddleware:
    """Sets the correlation id for the request, echoes it in the response, and logs one access line.

    The id comes from the `X-Correlation-ID` header when the caller sent a sane
    one (so a chain of services shares it), and is made up otherwise.
    """

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self._app = app
        self._access_log = access_log
        self._log = logging.getLogger("command_service.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        correlation = _incoming_correlation_id(scope) or str(uuid.uuid4())
        token = _correlation_id.set(correlation)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), correlation.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            if self._access_log:
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
            _correlation_id.reset(token)


def _incoming_correlation_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == CORRELATION_HEADER.encode():
            text: str = value.decode("latin-1").strip()
            if 0 < len(text) <= _MAX_CORRELATION_ID and text.isprintable():
                return text
    return None
