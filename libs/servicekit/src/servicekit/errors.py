"""Refusals every HTTP service makes before its own logic runs; `servicekit.problems` answers them."""

from __future__ import annotations

import math

__all__ = [
    "AuthenticationFailed",
    "ClientDisconnected",
    "InvalidBodyField",
    "InvalidHeader",
    "MalformedBody",
    "NotAllowed",
    "RateLimited",
    "ServiceError",
    "ServiceStarting",
    "UnsupportedMediaType",
]


class ServiceError(Exception):
    """A request a service refuses before or around its domain; `detail` is safe to show the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthenticationFailed(ServiceError):
    """No bearer token, or one that does not verify; `error` is the RFC 6750 error code."""

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error


class NotAllowed(ServiceError):
    """The token verified but carries none of the roles the endpoint accepts."""


class RateLimited(ServiceError):
    """The caller used up its allowance; it may try again after `retry_after_seconds`."""

    def __init__(self, retry_after_seconds: float) -> None:
        # Whole seconds, rounded up, as the Retry-After header says: the body and the header agree.
        self.retry_after = max(1, math.ceil(retry_after_seconds))
        super().__init__(f"too many requests: retry in {self.retry_after} s")
        self.retry_after_seconds = retry_after_seconds


class InvalidHeader(ServiceError):
    """A request header is present but unusable; `header` names it."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"header {header}: {message}")
        self.header = header
        self.message = message


class MalformedBody(ServiceError):
    """The request body cannot be read as JSON at all: not UTF-8, or nested beyond what can be parsed."""


class UnsupportedMediaType(ServiceError):
    """The body is not sent as JSON (`Content-Type` missing or another media type)."""


class InvalidBodyField(ServiceError):
    """A JSON body that breaks its type; `field` is a path like `lines[0].sku` ("" for the body itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field or '(body)'}: {message}")
        self.field = field
        self.message = message


class ClientDisconnected(ServiceError):
    """The client went away before sending its whole body; nobody is left to answer."""


class ServiceStarting(ServiceError):
    """A request came before start-up handed over the object its handler needs (503, `Retry-After`)."""
