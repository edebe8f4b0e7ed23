"""Limits on what a client may send before the app sees a request, enforced in uvicorn's protocol.

uvicorn's httptools protocol bounds neither header size nor the time to send them.
`LimitedHttpToolsProtocol` reads `HeaderLimits` from `LimitedConfig` (a picklable
`uvicorn.Config`, so workers share them) and answers 431 (headers over
`max_header_bytes` or `max_headers`), 414 (URL alone over `max_header_bytes`) or 408
(headers incomplete within `header_timeout`; a silent connection is just closed).
How a refusal is sent without a reset: `docs/architecture.md`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderLimits", "LimitedConfig", "LimitedHttpToolsProtocol"]

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}
# How long a refused connection is drained before it is closed, if the client does not close it first.
_LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HeaderLimits:
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0


class LimitedConfig(uvicorn.Config):
    """uvicorn's configuration plus the header limits; serves with `LimitedHttpToolsProtocol`."""

    def __init__(self, app: Any, *, header_limits: HeaderLimits, **options: Any) -> None:
        super().__init__(app, http=LimitedHttpToolsProtocol, **options)
        self.header_limits = header_limits


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on request headers and the time to send them."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = getattr(config, "header_limits", None) or HeaderLimits()
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.header_timeout = limits.header_timeout
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._in_request = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        # The deadline is armed only for a request whose headers did not all come in this read:
        # almost every request's do, and then no timer is made or cancelled for it.
        if self._in_request and self._header_timer is None and not self._refused:
            self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        self._in_request = True
        # The connection's first bytes: its deadline for sending anything at all is met.
        self._disarm_header_timer()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(url)
        if self._header_bytes > self.max_header_bytes:
            self._refuse(414, "the URL is too long")
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes")
        elif self._header_count > self.max_headers:
            self._refuse(431, f"more than {self.max_headers} request headers")
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm_header_timer()
        self._in_request = False
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self._in_request:
            self._refuse(408, f"request headers not complete within {self.header_timeout:g} s")
        elif self.cycle is None or self.cycle.response_complete:
            # Nothing sent at all (or nothing after the last answer): just hang up.
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm_header_timer()
        body = message.encode()
        response = b"".join(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.logger.info("refused a request: %s", message)
        self.transport.write(response)
        if self.transport.is_closing() or not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with the rest of the request unread makes the kernel reset the connection, and a
        # reset can destroy the answer before the client reads it. So: the answer, then our end of
        # the connection (FIN); what still comes is read and dropped (`_refused`), and the
        # connection closes when the client closes it (`eof_received`) or after a moment.
        self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)
