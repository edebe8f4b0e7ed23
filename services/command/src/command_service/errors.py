"""The service's own refusals, raised by its parts and turned into problem details in one place.

Domain refusals come from `fulfilment.errors`; these are the ones the HTTP layer
adds: authentication, authorisation, rate limits, idempotency keys, preconditions.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "IdempotencyKeyReused",
    "InvalidHeader",
    "NotAllowed",
    "PreconditionFailed",
    "RateLimited",
    "ServiceError",
    "TooMuchContention",
]


class ServiceError(Exception):
    """A request the service refuses before or around the domain."""

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
    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"too many requests: retry in {retry_after_seconds:.2f}s")
        self.retry_after_seconds = retry_after_seconds


class InvalidHeader(ServiceError):
    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"header {header}: {message}")
        self.header = header
        self.message = message


class IdempotencyKeyReused(ServiceError):
    """The key was first used for a different request (method, path or body)."""


class PreconditionFailed(ServiceError):
    """If-Match named a version the stream is no longer (or not yet) at."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"{stream_id} is at version {actual}, not {expected}: reload it and decide again")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class TooMuchContention(ServiceError):
    """The stream kept moving under the command through every retry; the client may try again."""
