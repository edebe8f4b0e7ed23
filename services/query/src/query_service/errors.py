"""The query service's own refusals, turned into problem details by its problem table.

Authentication, authorisation, rate limits and bad headers come from
`servicekit.errors`; a malformed cursor from `readmodels.order_queries`.
"""

from __future__ import annotations

from collections.abc import Sequence

from servicekit.errors import ServiceError

__all__ = ["InvalidQuery", "NotYetConsistent", "OrderNotFound", "ProductNotFound"]


class OrderNotFound(ServiceError):
    """No such order in the read model, or not one the caller may see (the answer is the same)."""


class ProductNotFound(ServiceError):
    """No such SKU in the read model (not registered, or not projected yet)."""


class NotYetConsistent(ServiceError):
    """The read model did not reach the request's consistency token in time."""

    def __init__(self, projection: str, awaited: int, reached: int, waited_seconds: float) -> None:
        super().__init__(
            f"the {projection} read model is at position {reached}, not yet at {awaited} "
            f"(waited {waited_seconds:g} s): retry shortly"
        )
        self.awaited = awaited
        self.reached = reached


class InvalidQuery(ServiceError):
    """Query parameters that are each well-formed but wrong: unknown, repeated or contradicting each other."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))
        self.problems = list(problems)
