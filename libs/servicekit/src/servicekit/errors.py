"""Refusals every HTTP service makes before its own logic runs; `servicekit.problems` answers them."""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "InvalidHeader",
    "NotAllowed",
    "RateLimited",
    "ServiceError",
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
        super().__init__(f"too many requests: retry in {retry_after_seconds:.2f}s")
        self.retry_after_seconds = retry_after_seconds


class InvalidHeader(ServiceError):
    """A request header is present but unusable; `header` names it."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"header {header}: {message}")
        self.header = header
        self.message = message
