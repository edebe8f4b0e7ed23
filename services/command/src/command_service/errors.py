"""The command service's own refusals, turned into problem details by its problem table.

Domain refusals come from `fulfilment.errors`; authentication, authorisation, rate
limits and bad headers from `servicekit.errors`. These are the ones the command
path adds: idempotency keys, preconditions, contention.
"""

from __future__ import annotations

from servicekit.errors import ServiceError

__all__ = ["IdempotencyKeyReused", "PreconditionFailed", "TooMuchContention"]


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
